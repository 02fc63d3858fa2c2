"""Forms of the operator's actions: a reason, a resolve's step (and output, forward), a signal's name and data."""

from __future__ import annotations

from typing import Any

from django import forms


class ReasonForm(forms.Form):
    reason = forms.CharField(
        label="Reason",
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="Why, for the audit trail: it is recorded with your name in the run's event log.",
    )

    def clean_reason(self) -> str:
        reason: str = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("Say why: an empty reason is not recorded.")
        return reason


class ResolveForm(ReasonForm):
    step = forms.ChoiceField(label="Step", help_text="The step whose effect you undid by hand.")
    output = forms.JSONField(
        label="Output",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        help_text="What the step should have returned, as JSON (an object's keys are merged into the payload of "
        "the steps after it, like any step's output). Empty: no output.",
    )

    def __init__(self, *args: Any, steps: list[str], forward: bool = False, **kwargs: Any) -> None:
        """``forward``: the run failed after its pivot, so the steps are resolved as done, with an output."""
        super().__init__(*args, **kwargs)
        field = self.fields["step"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [(name, name) for name in steps]
        if forward:
            field.help_text = "The step that failed after the pivot, which you did by hand."
            self.order_fields(["step", "output", "reason"])
        else:
            del self.fields["output"]
            self.order_fields(["step", "reason"])


class SignalForm(forms.Form):
    name = forms.ChoiceField(label="Signal", help_text="The Wait step the signal is for.")
    # Named "data" like the API's field: the form's metaclass moves declared fields off the class, so Form.data
    # (the bound input) is untouched.
    data = forms.JSONField(  # type: ignore[assignment]
        label="Data",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        help_text="A JSON object: it becomes the step's output, merged into the payload of the steps after it. "
        "Empty: {}.",
    )
    reason = forms.CharField(
        label="Reason",
        required=False,
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 80}),
        help_text="Optional: recorded with your name in the run's event log.",
    )

    def __init__(self, *args: Any, signals: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["name"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [(name, name) for name in signals]

    def clean_data(self) -> dict[str, Any]:
        data = self.cleaned_data["data"]
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise forms.ValidationError('Give a JSON object, such as {"approved": true}.')
        return data
