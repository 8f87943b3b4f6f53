from django import template

from observability.charts import stacked_columns
from observability.selectors import FlowSeries

register = template.Library()


@register.simple_tag
def orders_per_hour_chart(summary):
    hours = [hour for hour, _ in summary.orders_per_hour]
    line = FlowSeries("orders placed", [count for _, count in summary.orders_per_hour])
    return stacked_columns(hours, [line] if hours else [], title="Orders placed per hour")
