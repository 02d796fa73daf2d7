import factory
from factory.django import DjangoModelFactory

from agent33.tenancy.models import Tenant


class TenantFactory(DjangoModelFactory):
    class Meta:
        model = Tenant
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"tenant-{n}")
    name = factory.LazyAttribute(lambda o: f"Tenant {o.slug}")


class TenantOwnedFactory(DjangoModelFactory):
    """Base for tenant-owned factories: writes through the explicit all-tenants manager
    (tests create rows outside any request), and children inherit their parent's tenant."""

    class Meta:
        abstract = True

    tenant = factory.SubFactory(TenantFactory)

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return model_class.all_tenants.create(*args, **kwargs)
