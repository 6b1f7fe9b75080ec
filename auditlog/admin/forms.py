from django import forms

from auditlog.keys.services import MSG_RESERVED_NAME
from auditlog.models import RESERVED_SOURCE_PREFIX, Scope


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="Who uses this key, e.g. billing-service.")
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=[Scope.WRITE],
        help_text="write: POST events. read: GET its own events. read_all: GET every source's events, "
        "this service's own included (auditors' tools, SIEM exports). metrics: GET /metrics (Prometheus).",
    )

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if name.lower().startswith(RESERVED_SOURCE_PREFIX):
            raise forms.ValidationError(MSG_RESERVED_NAME)
        return name
