from botocore.exceptions import BotoCoreError, ClientError
from django.core.management.base import BaseCommand, CommandError

from eventbus import aws
from sagas import selectors


class Command(BaseCommand):
    help = "The orchestrated saga (ORDER_SAGA=stepfunctions): saga show ORDER_ID prints an execution's history."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        show = actions.add_parser("show", help="Print the execution history of an order's saga.")
        show.add_argument("order_id")

    def handle(self, *args, action: str, order_id: str, **options):
        try:
            summary = selectors.execution_summary(order_id=order_id)
            if summary is None:
                raise CommandError("ORDER_SAGA is choreography: orders run no Step Functions execution.")
            if summary.status == "NOT_STARTED":
                raise CommandError(f"No execution for order {order_id}.")
            history = selectors.execution_history(order_id=order_id)
        except (BotoCoreError, ClientError) as exc:
            raise CommandError(aws.explain(exc)) from None
        self.stdout.write(f"execution {summary.arn}\nstatus {summary.status} · last state {summary.state}")
        self.stdout.write(f"console {summary.console_url}")
        started = history[0]["timestamp"] if history else None
        for event in history:
            offset = (event["timestamp"] - started).total_seconds() if started else 0.0
            detail = _detail(event)
            self.stdout.write(f"{event['id']:>4}  +{offset:7.3f}s  {event['type']:<28} {detail}")


def _detail(event: dict) -> str:
    for key, value in event.items():
        if key.endswith("EventDetails") and isinstance(value, dict):
            parts = []
            for field in ("name", "resourceType", "resource", "error", "cause"):
                if value.get(field):
                    parts.append(f"{field}={str(value[field])[:120]}")
            return " ".join(parts)
    return ""
