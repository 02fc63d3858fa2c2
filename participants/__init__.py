"""Example participant services a saga calls: orders, inventory, payments, shipping and notifications."""
