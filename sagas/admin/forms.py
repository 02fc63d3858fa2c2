"""Forms of the operator's actions: a reason, a resolve's step (and output, forward), a signal's name and data."""

from __future__ import annotations

from typing import Any

from django import forms
from django.forms.fields import InvalidJSONInput, JSONString

from sagas.exceptions import InvalidPayload
from sagas.jsonsafe import read_json


class StorableJSONField(forms.JSONField):
    """JSON a run stores (a signal's data, a resolved step's output): what ``jsonsafe.read_json`` refuses (what
    Python cannot read, or a run cannot store) is the field's error, not a 500. ``what`` names the value in the
    messages."""

    def __init__(self, *, what: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.what = what

    def to_python(self, value: Any) -> Any:
        if self.disabled or value in self.empty_values or not isinstance(value, str):
            return super().to_python(value)
        try:
            converted = read_json(value, what=self.what)
        except InvalidPayload as exc:
            raise forms.ValidationError(str(exc), code="invalid") from exc
        return JSONString(converted) if isinstance(converted, str) else converted  # as Django's field returns it

    def bound_data(self, data: Any, initial: Any) -> Any:
        # Shown again as typed: Django's field parses it again to show it, which raises what to_python caught.
        if self.disabled or not isinstance(data, str):
            return super().bound_data(data, initial)
        return InvalidJSONInput(data)


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
    output = StorableJSONField(
        what="output",
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
    data = StorableJSONField(  # type: ignore[assignment]
        what="data",
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
