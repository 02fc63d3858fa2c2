"""Indexes that let a step's UPDATE of its run be a HOT update, and no index a composite one already gives."""

import django.db.models.deletion
from django.db import migrations, models


def set_run_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE sagas_sagarun SET (fillfactor = 80)")


class Migration(migrations.Migration):

    dependencies = [
        ('sagas', '0008_circuit_waits'),
    ]

    operations = [
        # Room on each page for a run's new row version: a step's UPDATE of its run then stays on the page (HOT).
        migrations.RunPython(set_run_fillfactor, migrations.RunPython.noop),
        migrations.RemoveIndex(
            model_name='sagarun',
            name='sagas_run_status_updated',
        ),
        migrations.AlterField(
            model_name='sagaevent',
            name='run',
            field=models.ForeignKey(db_index=False, help_text='The saga run.', on_delete=django.db.models.deletion.CASCADE, related_name='events', to='sagas.sagarun', verbose_name='run'),
        ),
        migrations.AlterField(
            model_name='sagaevent',
            name='type',
            field=models.CharField(choices=[('SagaStarted', 'Saga Started'), ('SagaExecuting', 'Saga Executing'), ('SagaCompleted', 'Saga Completed'), ('SagaCompensating', 'Saga Compensating'), ('SagaCompensated', 'Saga Compensated'), ('SagaFailed', 'Saga Failed'), ('SagaCancelled', 'Saga Cancelled'), ('SagaRetried', 'Saga Retried'), ('SagaTimedOut', 'Saga Timed Out'), ('SagaRedriven', 'Saga Redriven'), ('SagaParked', 'Saga Parked'), ('StepStarted', 'Step Started'), ('StepSucceeded', 'Step Succeeded'), ('StepAttemptFailed', 'Step Attempt Failed'), ('StepFailed', 'Step Failed'), ('StepSkipped', 'Step Skipped'), ('CompensationScheduled', 'Compensation Scheduled'), ('CompensationStarted', 'Compensation Started'), ('CompensationSucceeded', 'Compensation Succeeded'), ('CompensationAttemptFailed', 'Compensation Attempt Failed'), ('CompensationFailed', 'Compensation Failed'), ('CompensationResolved', 'Compensation Resolved'), ('BreakerOpened', 'Breaker Opened'), ('BreakerHalfOpened', 'Breaker Half Opened'), ('BreakerClosed', 'Breaker Closed'), ('CircuitRefused', 'Circuit Refused')], help_text='What happened.', max_length=40, verbose_name='type'),
        ),
        migrations.AlterField(
            model_name='sagasteprun',
            name='run',
            field=models.ForeignKey(db_index=False, help_text='The saga run.', on_delete=django.db.models.deletion.CASCADE, related_name='steps', to='sagas.sagarun', verbose_name='run'),
        ),
        migrations.AddIndex(
            model_name='sagarun',
            index=models.Index(condition=models.Q(('status__in', ['compensating', 'executing', 'pending', 'timeout'])), fields=['status'], name='sagas_run_active'),
        ),
    ]
