"""The analytics service: counts how saga runs ended, per saga, outcome and day."""
