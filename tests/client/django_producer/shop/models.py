from django.db import models


class Tag(models.Model):
    name = models.CharField(max_length=50)

    def __str__(self):
        return self.name


class Customer(models.Model):
    email = models.EmailField()
    password = models.CharField(max_length=128)  # a hash: never sent
    pin = models.CharField(max_length=8, blank=True)  # marked secret in AUDITLOG_CLIENT
    api_token = models.CharField(max_length=64, blank=True)

    def __str__(self):
        return self.email


class Invoice(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE)
    total = models.DecimalField(max_digits=10, decimal_places=2)
    status = models.CharField(max_length=20, default="open")
    tags = models.ManyToManyField(Tag, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"INV-{self.pk}"
