"""Expire active and suspended autonomy budgets whose `expires_at` has passed.

Celery beat runs the same thing every 30 s (operations.tasks.expire_budgets).
"""

from django.core.management.base import BaseCommand

from operations.services import budgets_expire


class Command(BaseCommand):
    help = "Expire active and suspended autonomy budgets whose expires_at has passed."

    def handle(self, *args, **options):
        expired = budgets_expire()
        for budget_id in expired:
            self.stdout.write(f"expired {budget_id}")
        self.stdout.write(f"Expired {len(expired)} budget(s).")
