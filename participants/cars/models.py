"""Models of the car rental service: the fleet per car class and city, and the rentals from it."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models


class RentalStatus(models.TextChoices):
    RENTED = "rented", "Rented"
    RETURNED = "returned", "Returned"


class CarClass(models.Model):
    name = models.CharField(
        verbose_name="name",
        max_length=100,
        help_text="Kind of car travellers book, e.g. Compact or Estate.",
    )
    city = models.CharField(
        verbose_name="city",
        max_length=100,
        help_text="City whose station rents these cars.",
    )
    cars_total = models.PositiveIntegerField(
        verbose_name="cars total",
        default=0,
        help_text="Cars of this class at the station; an operator may change it, not below the cars rented.",
    )
    cars_rented = models.PositiveIntegerField(
        verbose_name="cars rented",
        default=0,
        help_text="Cars out on active rentals; only rentals and returns change it.",
    )
    response_ms = models.PositiveIntegerField(
        verbose_name="response time (ms)",
        default=0,
        help_text=(
            "Simulates the rental company's API being slow: rentals and returns of this class wait this many "
            "milliseconds before they lock anything."
        ),
    )

    class Meta:
        verbose_name = "car class"
        verbose_name_plural = "car classes"
        ordering = ["city", "name"]
        constraints = [
            models.UniqueConstraint(fields=["name", "city"], name="cars_class_one_per_city"),
            models.CheckConstraint(
                condition=models.Q(cars_rented__lte=models.F("cars_total")), name="cars_class_not_overbooked"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} in {self.city} ({self.cars_rented}/{self.cars_total} rented)"

    def clean(self) -> None:
        if self.cars_total < self.cars_rented:
            raise ValidationError(
                {"cars_total": f"{self.cars_rented} cars are rented out; take them back before going below that."}
            )


class CarRental(models.Model):
    car_class = models.ForeignKey(
        CarClass,
        verbose_name="car class",
        on_delete=models.PROTECT,
        related_name="rentals",
        help_text="The class of car rented.",
    )
    traveller_email = models.EmailField(
        verbose_name="traveller e-mail",
        help_text="Address of the traveller the car is rented to.",
    )
    days = models.PositiveIntegerField(
        verbose_name="days",
        validators=[MinValueValidator(1)],
        help_text="For how many days the car is rented.",
    )
    status = models.CharField(
        verbose_name="status",
        max_length=16,
        choices=RentalStatus.choices,
        default=RentalStatus.RENTED,
        help_text="Rented while it takes a car; returned once the car is back (or the rental was cancelled).",
    )
    idempotency_key = models.CharField(
        verbose_name="idempotency key",
        max_length=255,
        unique=True,
        help_text="Key of the request that rented the car; a repeat of it returns this rental.",
    )
    return_key = models.CharField(
        verbose_name="return key",
        max_length=255,
        unique=True,
        null=True,
        blank=True,
        help_text="Key of the request that returned the car; empty while it is rented.",
    )
    started_at = models.DateTimeField(
        verbose_name="call started at",
        help_text="When the call that rented the car came in, before the rental company's response time.",
    )
    finished_at = models.DateTimeField(
        verbose_name="call finished at",
        help_text="When the call that rented the car had done its work.",
    )
    created_at = models.DateTimeField(
        verbose_name="created at",
        auto_now_add=True,
        help_text="When the car was rented.",
    )
    returned_at = models.DateTimeField(
        verbose_name="returned at",
        null=True,
        blank=True,
        help_text="When the car was returned; empty while it is rented.",
    )

    class Meta:
        verbose_name = "car rental"
        verbose_name_plural = "car rentals"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(days__gte=1), name="cars_rental_days_positive"),
        ]

    def __str__(self) -> str:
        return f"Car rental {self.pk} for {self.traveller_email} ({self.status})"
