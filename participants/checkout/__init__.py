"""The checkout orchestrator: the PlaceOrder saga that spans the participant services."""
