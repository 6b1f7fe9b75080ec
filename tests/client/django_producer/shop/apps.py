from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "tests.client.django_producer.shop"
    label = "shop"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from auditlog_client.django import register

        from tests.client.django_producer.shop.models import Customer, Invoice

        register(Invoice, exclude=("updated_at",))
        register(Customer)
