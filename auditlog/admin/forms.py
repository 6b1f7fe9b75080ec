from django import forms

from auditlog.models import Scope


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="Who uses this key, e.g. billing-service.")
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=[Scope.WRITE],
        help_text="write: POST events. read: GET events.",
    )
