"""The travel orchestrator: the BookTrip saga that books a flight, a hotel and a car in parallel."""
