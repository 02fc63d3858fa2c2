"""The operator's console: saga runs (list, run page, actions, health) and definitions in the Django admin."""

from sagas.admin.definitions import SagaDefinitionAdmin
from sagas.admin.runs import SagaRunAdmin

__all__ = ["SagaDefinitionAdmin", "SagaRunAdmin"]
