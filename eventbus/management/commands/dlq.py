from botocore.exceptions import BotoCoreError, ClientError
from django.core.management.base import BaseCommand, CommandError

from eventbus import aws, selectors, services, topology


class Command(BaseCommand):
    help = "Inspect and redrive dead-letter queues: list | show QUEUE | redrive QUEUE [--max N]."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        actions.add_parser("list", help="Depth of every queue and its DLQ.")
        show = actions.add_parser("show", help="Messages in a DLQ, with why they failed where known.")
        show.add_argument("queue", help="A service (inventory), its queue or its DLQ name.")
        show.add_argument("--limit", type=int, default=10)
        redrive = actions.add_parser("redrive", help="Move messages from a DLQ back to its queue.")
        redrive.add_argument("queue", help="A service (inventory), its queue or its DLQ name.")
        redrive.add_argument("--max", type=int, default=100, help="At most this many messages (default 100).")

    def handle(self, *args, action: str, **options):
        try:
            if action == "list":
                self.list_depths()
                return
            try:
                queue = topology.queue_for(options["queue"])
            except LookupError as exc:
                raise CommandError(str(exc)) from None
            if action == "show":
                self.show(queue, options["limit"])
            else:
                self.redrive(queue, options["max"])
        except (BotoCoreError, ClientError) as exc:
            raise CommandError(aws.explain(exc)) from None

    def list_depths(self) -> None:
        depths = selectors.bus_depths()
        self.stdout.write(f"{'service':<14} {'queue':<28} {'visible':>8} {'in flight':>10} {'DLQ depth':>10}")
        for depth in depths.queues:
            self.stdout.write(
                f"{depth.service:<14} {depth.queue_name:<28} "
                f"{depth.visible:>8} {depth.in_flight:>10} {depth.dlq_depth:>10}"
            )
        self.stdout.write(
            f"{'(delivery)':<14} {topology.target_dlq_name():<28} {'':>8} {'':>10} {depths.target_dlq_depth:>10}"
        )
        tasks = topology.task_queue()
        if depths.task_queue is not None:
            visible, in_flight = depths.task_queue
            self.stdout.write(
                f"{'(tasks)':<14} {tasks.name:<28} {visible:>8} {in_flight:>10} {depths.task_dlq_depth:>10}"
            )

    def show(self, queue: topology.ServiceQueue | topology.TaskQueue, limit: int) -> None:
        letters = selectors.peek_dead_letters(queue_name=queue.dlq_name, limit=limit)
        if not letters:
            self.stdout.write(f"{queue.dlq_name} is empty.")
            return
        for letter in letters:
            self.stdout.write(
                f"message {letter.message_id}  event {letter.event_id or '?'}  {letter.detail_type or '?'}\n"
                f"  failed {letter.receive_count} time(s): {letter.reason}\n"
                f"  body: {letter.body[:300]}"
            )

    def redrive(self, queue: topology.ServiceQueue | topology.TaskQueue, max_messages: int) -> None:
        if max_messages < 1:
            raise CommandError("--max must be at least 1")
        report = services.redrive_dead_letters(queue=queue, max_messages=max_messages)
        self.stdout.write(f"Moved {report.moved} message(s) from {queue.dlq_name} to {queue.name}.")
        if problems := report.problems(queue):
            raise CommandError("; ".join(problems) + ".")
