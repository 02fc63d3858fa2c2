"""Models of the airline service: flights and the seats held on them."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models


class HoldStatus(models.TextChoices):
    HELD = "held", "Held"
    RELEASED = "released", "Released"


class Flight(models.Model):
    number = models.CharField(
        verbose_name="number",
        max_length=16,
        unique=True,
        help_text="Flight number travellers book by, e.g. KL1001; one departure per number in this example.",
    )
    departs_on = models.DateField(
        verbose_name="departs on",
        help_text="Day the flight leaves.",
    )
    seats_total = models.PositiveIntegerField(
        verbose_name="seats total",
        default=0,
        help_text="Seats the aircraft has for sale; an operator may change it, not below the seats held.",
    )
    seats_held = models.PositiveIntegerField(
        verbose_name="seats held",
        default=0,
        help_text="Seats held by active holds; only holds and releases change it.",
    )
    response_ms = models.PositiveIntegerField(
        verbose_name="response time (ms)",
        default=0,
        help_text=(
            "Simulates the airline's API being slow: holds and releases of this flight wait this many "
            "milliseconds before they lock anything."
        ),
    )

    class Meta:
        verbose_name = "flight"
        verbose_name_plural = "flights"
        ordering = ["departs_on", "number"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(seats_held__lte=models.F("seats_total")), name="airline_flight_not_overbooked"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.number} on {self.departs_on} ({self.seats_held}/{self.seats_total} held)"

    def clean(self) -> None:
        if self.seats_total < self.seats_held:
            raise ValidationError(
                {"seats_total": f"{self.seats_held} seats are held; release holds before going below that."}
            )


class SeatHold(models.Model):
    flight = models.ForeignKey(
        Flight,
        verbose_name="flight",
        on_delete=models.PROTECT,
        related_name="holds",
        help_text="The flight the seat is held on.",
    )
    traveller_email = models.EmailField(
        verbose_name="traveller e-mail",
        help_text="Address of the traveller the seat is held for.",
    )
    status = models.CharField(
        verbose_name="status",
        max_length=16,
        choices=HoldStatus.choices,
        default=HoldStatus.HELD,
        help_text="Held while it takes a seat; released once the seat went back on sale.",
    )
    idempotency_key = models.CharField(
        verbose_name="idempotency key",
        max_length=255,
        unique=True,
        help_text="Key of the request that held the seat; a repeat of it returns this hold.",
    )
    release_key = models.CharField(
        verbose_name="release key",
        max_length=255,
        unique=True,
        null=True,
        blank=True,
        help_text="Key of the request that released the seat; empty while it is held.",
    )
    started_at = models.DateTimeField(
        verbose_name="call started at",
        help_text="When the call that held the seat came in, before the airline's response time.",
    )
    finished_at = models.DateTimeField(
        verbose_name="call finished at",
        help_text="When the call that held the seat had done its work.",
    )
    created_at = models.DateTimeField(
        verbose_name="created at",
        auto_now_add=True,
        help_text="When the seat was held.",
    )
    released_at = models.DateTimeField(
        verbose_name="released at",
        null=True,
        blank=True,
        help_text="When the seat went back on sale; empty while it is held.",
    )

    class Meta:
        verbose_name = "seat hold"
        verbose_name_plural = "seat holds"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Seat hold {self.pk} for {self.traveller_email} ({self.status})"
