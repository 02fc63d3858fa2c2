"""Models of the hotels service: hotels and the rooms booked in them."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models


class BookingStatus(models.TextChoices):
    BOOKED = "booked", "Booked"
    CANCELLED = "cancelled", "Cancelled"


class Hotel(models.Model):
    name = models.CharField(
        verbose_name="name",
        max_length=200,
        help_text="What the hotel is called.",
    )
    city = models.CharField(
        verbose_name="city",
        max_length=100,
        help_text="City the hotel is in.",
    )
    rooms_total = models.PositiveIntegerField(
        verbose_name="rooms total",
        default=0,
        help_text="Rooms the hotel lets; an operator may change it, not below the rooms booked.",
    )
    rooms_booked = models.PositiveIntegerField(
        verbose_name="rooms booked",
        default=0,
        help_text="Rooms taken by active bookings; only bookings and cancellations change it.",
    )
    response_ms = models.PositiveIntegerField(
        verbose_name="response time (ms)",
        default=0,
        help_text=(
            "Simulates the hotel's API being slow: bookings and cancellations at this hotel wait this many "
            "milliseconds before they lock anything."
        ),
    )

    class Meta:
        verbose_name = "hotel"
        verbose_name_plural = "hotels"
        ordering = ["city", "name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(rooms_booked__lte=models.F("rooms_total")), name="hotels_hotel_not_overbooked"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name}, {self.city} ({self.rooms_booked}/{self.rooms_total} booked)"

    def clean(self) -> None:
        if self.rooms_total < self.rooms_booked:
            raise ValidationError(
                {"rooms_total": f"{self.rooms_booked} rooms are booked; cancel bookings before going below that."}
            )


class RoomBooking(models.Model):
    hotel = models.ForeignKey(
        Hotel,
        verbose_name="hotel",
        on_delete=models.PROTECT,
        related_name="bookings",
        help_text="The hotel the room is booked in.",
    )
    traveller_email = models.EmailField(
        verbose_name="traveller e-mail",
        help_text="Address of the traveller the room is booked for.",
    )
    nights = models.PositiveIntegerField(
        verbose_name="nights",
        validators=[MinValueValidator(1)],
        help_text="How many nights the traveller stays.",
    )
    status = models.CharField(
        verbose_name="status",
        max_length=16,
        choices=BookingStatus.choices,
        default=BookingStatus.BOOKED,
        help_text="Booked while it takes a room; cancelled once the room was let go again.",
    )
    idempotency_key = models.CharField(
        verbose_name="idempotency key",
        max_length=255,
        unique=True,
        help_text="Key of the request that booked the room; a repeat of it returns this booking.",
    )
    cancel_key = models.CharField(
        verbose_name="cancel key",
        max_length=255,
        unique=True,
        null=True,
        blank=True,
        help_text="Key of the request that cancelled the booking; empty while it is booked.",
    )
    started_at = models.DateTimeField(
        verbose_name="call started at",
        help_text="When the call that booked the room came in, before the hotel's response time.",
    )
    finished_at = models.DateTimeField(
        verbose_name="call finished at",
        help_text="When the call that booked the room had done its work.",
    )
    created_at = models.DateTimeField(
        verbose_name="created at",
        auto_now_add=True,
        help_text="When the room was booked.",
    )
    cancelled_at = models.DateTimeField(
        verbose_name="cancelled at",
        null=True,
        blank=True,
        help_text="When the booking was cancelled; empty while it is booked.",
    )

    class Meta:
        verbose_name = "room booking"
        verbose_name_plural = "room bookings"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(nights__gte=1), name="hotels_booking_nights_positive"),
        ]

    def __str__(self) -> str:
        return f"Room booking {self.pk} for {self.traveller_email} ({self.status})"
