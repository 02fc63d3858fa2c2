"""App config of the checkout orchestrator."""

from django.apps import AppConfig


class CheckoutConfig(AppConfig):
    name = "participants.checkout"
    label = "checkout"
    verbose_name = "Checkout"
