"""The operator's console: saga runs (list, run page, actions, health), definitions, outbox in the Django admin."""

from sagas.admin.definitions import SagaDefinitionAdmin
from sagas.admin.outbox import SagaOutboxAdmin, SagaReceiptAdmin
from sagas.admin.runs import SagaRunAdmin

__all__ = ["SagaDefinitionAdmin", "SagaOutboxAdmin", "SagaReceiptAdmin", "SagaRunAdmin"]
