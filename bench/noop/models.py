"""The one row a task of the bare "chain + PostgreSQL row" variant writes."""

from __future__ import annotations

from django.db import models


class StepRow(models.Model):
    run = models.CharField("run", max_length=64, help_text="The benchmark's id of the chain.")
    step = models.PositiveSmallIntegerField("step", help_text="The task's position in the chain.")
    created_at = models.DateTimeField("created at", auto_now_add=True, help_text="When the task wrote it.")

    class Meta:
        verbose_name = "step row"
        verbose_name_plural = "step rows"

    def __str__(self) -> str:
        return f"{self.run}#{self.step}"
