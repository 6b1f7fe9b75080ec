from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.template.defaultfilters import pluralize
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers

from auditlog.admin.access import access_event, api_key_created, api_key_revoked
from auditlog.admin.forms import ApiKeyCreateForm
from auditlog.keys.services import MSG_REVOKED_FROM_A_SERVER_PROCESS, api_key_create, api_key_revoke
from auditlog.models import ApiKey


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "scopes", "created_at", "last_used_at", "revoked_at", "silent_since")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("=prefix", "name")
    readonly_fields = ("name", "prefix", "scopes", "created_at", "last_used_at", "revoked_at", "silent_since")
    actions = ("revoke",)

    def save_model(self, request, obj, form, change):
        """Only the expected interval changes here; a longer one quiets an alarm, so it is recorded."""
        before = ApiKey.objects.filter(pk=obj.pk).values_list("expected_interval_seconds", flat=True).first()
        super().save_model(request, obj, form, change)
        if change and before != obj.expected_interval_seconds:
            access_event(
                "auditlog.apikey.change",
                target_type="apikey",
                target_id=obj.prefix,
                metadata={"changes": {"expected_interval_seconds": [before, obj.expected_interval_seconds]}},
            )

    def has_delete_permission(self, request, obj=None):
        return False  # events reference their key (PROTECT): revoke instead

    def add_view(self, request, form_url="", extra_context=None):
        """Create through the service and show the token once, on a page nothing caches."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ApiKeyCreateForm(request.POST or None)
        context = {**self.admin_site.each_context(request), "opts": self.opts, "title": "Add API key"}
        if request.method == "POST" and form.is_valid():
            key, token = api_key_create(
                name=form.cleaned_data["name"], scopes=set(form.cleaned_data["scopes"])
            )
            self.log_addition(request, key, [{"added": {}}])
            api_key_created(key)
            response = TemplateResponse(
                request, "admin/auditlog/apikey/created.html", {**context, "key": key, "token": token}
            )
            add_never_cache_headers(response)
            return response
        return TemplateResponse(request, "admin/auditlog/apikey/add.html", {**context, "form": form})

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke(self, request, queryset):
        revoked = 0
        for key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(key=key)
            api_key_revoked(key)
            self.log_change(request, key, "Revoked.")
            revoked += 1
        if not revoked:
            self.message_user(request, "Those API keys were revoked already.", messages.WARNING)
            return
        when = MSG_REVOKED_FROM_A_SERVER_PROCESS.format(seconds=settings.AUDITLOG_API_KEY_CACHE_SECONDS)
        self.message_user(request, f"Revoked {revoked} API key{pluralize(revoked)}. {when}", messages.SUCCESS)
