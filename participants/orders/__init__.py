"""The orders service: records customer orders and cancels them."""
