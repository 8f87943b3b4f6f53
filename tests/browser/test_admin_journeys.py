"""A working day in the admin, in headless Chromium against the live local stack (tests/browser/conftest.py):
the superuser places an order by phone and watches it confirm, the warehouse ships it and restocks what
sold out, support cancels an order and sees the refund and the email, a poison message is found in its
DLQ and redriven, and the event-flow dashboard and an order's timeline are read. Support may not restock.

Each test leaves screenshots in .local/screenshots/<test>-<person>-<step>.png. Checks read what is on
the page (text, visible elements), as the person at the desk would.
"""

from __future__ import annotations

import json
import re
import time
import uuid

import pytest

from tests.local_stack import LocalStack

pytestmark = [
    # e2e: the in-process AWS mock (tests/conftest.py) stays off, so boto3 reaches the stack's endpoint.
    pytest.mark.e2e,
    pytest.mark.browser,
]

ADDRESS = {"street": "1 Main St", "city": "Seattle", "state": "WA", "zipCode": "98101", "country": "US"}


# --- helpers: the API for setting the scene, the browser for everything staff do -------------------


def wait_for_status(stack: LocalStack, order_id: str, status: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (current := stack.api("GET", f"/api/orders/{order_id}")["status"]) != status:
        assert current in ("PLACED", "RESERVED", status), f"order {order_id} went {current}, not {status}"
        assert time.monotonic() < deadline, f"order {order_id} still {current} after {timeout:.0f}s"
        time.sleep(0.3)


def order_via_api(stack: LocalStack, *, items: list[tuple[str, int]], customer: str) -> str:
    body = {
        "customerId": customer,
        "email": f"{customer}@example.com",
        "items": [{"productId": sku, "quantity": quantity} for sku, quantity in items],
        "shippingAddress": ADDRESS,
    }
    return stack.api("POST", "/api/orders", body)["orderId"]


def available(stack: LocalStack, sku: str) -> int:
    return next(p["available"] for p in stack.api("GET", "/api/products")["products"] if p["productId"] == sku)


def order_page(staff, order_id: str) -> None:
    staff.goto(f"/admin/orders/order/{order_id}/change/")


def field(staff, name: str) -> str:
    """A read-only field on an admin page, as shown."""
    return staff.page.locator(f".field-{name} .readonly").inner_text().strip()


def order_actions(staff) -> list[str]:
    return [text.strip() for text in staff.page.locator("a.order-action").all_text_contents()]


@pytest.fixture
def confirmed_order(stack) -> str:
    order_id = order_via_api(stack, items=[("prod-2", 1), ("prod-6", 1)], customer=f"dana-{uuid.uuid4().hex[:6]}")
    wait_for_status(stack, order_id, "CONFIRMED")
    return order_id


# --- the journeys -------------------------------------------------------------------------------


def test_an_order_placed_in_the_admin_confirms_and_the_warehouse_ships_it(sign_in, stack):
    admin = sign_in("admin")
    page = admin.page
    keyboards = available(stack, "prod-3")
    assert keyboards > 0, "the demo catalogue's keyboards are gone before the first order"

    # Orders → Add: the place-order form, with the catalogue beside it.
    admin.goto("/admin/orders/order/")
    page.click("text=Add order")
    page.wait_for_url(re.compile(r"/admin/orders/order/add/$"))
    assert page.locator("h1").inner_text() == "Place order"
    assert page.locator("#catalogue").get_by_text("Keyboard").is_visible()
    page.fill("#id_customer_id", "cust-phone-1")
    page.fill("#id_email", "phone.customer@example.com")
    page.fill("#id_street", "12 High St")
    page.fill("#id_city", "Portland")
    page.fill("#id_state", "OR")
    page.fill("#id_zip_code", "97201")
    page.fill("#id_country", "US")
    assert page.input_value("#id_payment_token") == "tok_visa"

    # One keyboard more than there is: refused on the form, nothing placed.
    page.select_option("#id_items-0-product_id", "prod-3")
    page.fill("#id_items-0-quantity", str(keyboards + 1))
    page.click("input[value='Place order']")
    refusal = page.locator("#order-items .errorlist")
    # The form comes back at the same address, so there is no URL to wait for: wait for the refusal
    # (a click waits only for the navigation to start, and a loaded machine renders it later).
    refusal.wait_for(state="visible", timeout=30_000)
    assert page.url.endswith("/admin/orders/order/add/")
    assert f"Only {keyboards} of Keyboard available" in refusal.inner_text()
    admin.screenshot("1-refused-more-than-available")

    # Every keyboard there is, and a second line through "Add another item".
    page.fill("#id_items-0-quantity", str(keyboards))
    page.click("#add-order-item")
    assert page.locator("tr.order-item").count() == 2
    page.select_option("#id_items-1-product_id", "prod-2")
    page.fill("#id_items-1-quantity", "2")
    admin.screenshot("2-two-items")
    page.click("input[value='Place order']")
    page.wait_for_url(re.compile(r"/admin/orders/order/[0-9a-f-]{36}/change/$"))
    order_id = re.search(r"/order/([0-9a-f-]{36})/", page.url).group(1)
    assert f"Order {order_id} placed for" in admin.message()
    lines = page.locator("#lines-group").inner_text()
    assert "Keyboard" in lines and "Mouse" in lines

    # The saga runs on the worker; staff reload until it has confirmed.
    admin.reload_until(lambda: field(admin, "status") == "Confirmed", what="the order's status")
    admin.screenshot("3-confirmed")

    # The warehouse ships it from the order's own page.
    warehouse = sign_in("warehouse")
    order_page(warehouse, order_id)
    assert order_actions(warehouse) == ["Ship…"]  # Warehouse may not cancel
    warehouse.page.click("a.order-action:has-text('Ship…')")
    assert warehouse.page.locator("h1").inner_text() == f"Ship order {order_id}"
    warehouse.page.fill("#id_carrier", "UPS")
    warehouse.page.fill("#id_tracking_number", "1Z999AA10123456784")
    warehouse.screenshot("4-ship-form")
    warehouse.page.click("input[value='Mark shipped']")
    assert f"Order {order_id} shipped with UPS." in warehouse.message()
    assert field(warehouse, "status") == "Shipped"
    assert field(warehouse, "tracking_number") == "1Z999AA10123456784"
    assert order_actions(warehouse) == []  # a shipped order can be neither shipped nor cancelled again
    warehouse.screenshot("5-shipped")


def test_support_cancels_a_paid_order_and_sees_the_refund_and_the_email(sign_in, stack, confirmed_order):
    support = sign_in("support")
    page = support.page
    order_page(support, confirmed_order)
    assert field(support, "status") == "Confirmed"
    assert order_actions(support) == ["Cancel order…"]  # Support may not ship

    page.click("a.order-action:has-text('Cancel order…')")
    assert page.locator("h1").inner_text() == f"Cancel order {confirmed_order}"
    reason = "The customer phoned: ordered twice by mistake (ticket 4711)."
    page.fill("#id_reason", reason)
    support.screenshot("1-cancel-form")
    page.click("input[value='Cancel order']")
    assert f"Order {confirmed_order} cancelled." in support.message()
    assert field(support, "status") == "Cancelled"
    assert field(support, "cancellation_reason") == reason

    # Payments refunds on Order Cancelled; the order records when.
    support.reload_until(lambda: field(support, "refunded_at") not in ("", "-"), what="the order's refund time")
    support.screenshot("2-cancelled-and-refunded")

    # Refunds: the order's refund, through the link on its page.
    page.click("#order-records >> text=Refunds")
    rows = page.locator("#result_list tbody tr")
    support.reload_until(lambda: rows.count() == 1, what="the Refunds list")
    assert "118.99" in rows.first.inner_text()  # a mouse and a webcam, refunded in full
    support.screenshot("3-refund")

    # Notifications: the cancellation email as the customer got it.
    order_page(support, confirmed_order)
    page.click("#order-records >> text=Notifications")
    cancellation = page.locator("#result_list tbody tr", has_text="Order cancelled")
    support.reload_until(lambda: cancellation.count() == 1, what="the Notifications list")
    cancellation.locator("th a, td a").first.click()
    assert field(support, "subject") == "Your order has been cancelled"
    body = field(support, "body")
    assert f"Your order {confirmed_order} has been cancelled" in body
    assert f"Our note: {reason}" in body
    assert "a full refund is on its way" in body
    support.screenshot("4-cancellation-email")


def test_the_warehouse_restocks_a_product_that_sold_out(sign_in, stack):
    keyboards = available(stack, "prod-3")
    if keyboards:  # run alone, or before the first journey: sell out the keyboards first
        order_via_api(stack, items=[("prod-3", keyboards)], customer="sell-out")
        deadline = time.monotonic() + 60
        while available(stack, "prod-3"):
            assert time.monotonic() < deadline, "the keyboards were not reserved"
            time.sleep(0.3)

    warehouse = sign_in("warehouse")
    page = warehouse.page
    warehouse.goto("/admin/inventory/product/")
    row = page.locator("#result_list tbody tr", has_text="Keyboard")
    assert row.locator("td.field-available").inner_text() == "0"
    warehouse.screenshot("1-sold-out")

    row.locator("input.action-select").check()
    page.select_option("select[name=action]", label="Restock selected products…")
    page.click("button[name=index]")
    assert page.locator("h1").inner_text() == "Restock products"
    assert page.locator("#content ul li").all_inner_texts() == ["prod-3 Keyboard"]
    page.fill("#id_quantity", "25")
    page.fill("#id_reason", "Delivery note DN-2041")
    warehouse.screenshot("2-restock-form")
    page.click("input[value='Restock']")
    assert "Restocked 1 product(s)" in warehouse.message()
    row = page.locator("#result_list tbody tr", has_text="Keyboard")
    assert row.locator("td.field-available").inner_text() == "25"
    warehouse.screenshot("3-restocked")
    assert available(stack, "prod-3") == 25


def test_support_cannot_restock(sign_in, stack):
    support = sign_in("support")
    page = support.page
    support.goto("/admin/inventory/product/")
    assert page.locator("#result_list").is_visible()  # Support sees the products …
    offered = page.locator("select[name=action] option").all_inner_texts()
    assert not any("Restock" in option for option in offered)  # … but is offered no restock
    support.screenshot("1-no-restock-action")

    # A forged POST of the action, with a valid session and CSRF token, is refused.
    before = available(stack, "prod-4")
    token = page.locator("input[name=csrfmiddlewaretoken]").first.get_attribute("value")
    response = page.request.post(
        f"{stack.base_url}/admin/inventory/product/",
        form={
            "csrfmiddlewaretoken": token,
            "action": "restock",
            "_selected_action": "4",
            "apply": "1",
            "quantity": "1000",
            "reason": "forged",
        },
        headers={"Referer": f"{stack.base_url}/admin/inventory/product/"},
    )
    assert response.status == 403
    assert "403 Forbidden" in response.text()
    assert available(stack, "prod-4") == before


def test_a_poison_message_reaches_its_dlq_and_shows_on_the_delivery_failures_page(sign_in, stack):
    # An Order Placed whose detail fails its schema, put straight onto analytics' queue, as a broken
    # producer or a bad replay would. analytics refuses it on every receive; after maxReceiveCount
    # SQS moves it to the DLQ.
    sqs = stack.boto3_client("sqs")
    queue_url = sqs.get_queue_url(QueueName="analytics-queue")["QueueUrl"]
    marker = f"poison-{uuid.uuid4().hex[:8]}"
    poison = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "source": "ecommerce.orders",
        "detail-type": "Order Placed",
        "detail": {"metadata": {"eventId": str(uuid.uuid4())}, "data": {"orderId": marker}},
    }
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(poison))

    admin = sign_in("admin")
    page = admin.page
    admin.goto("/admin/eventbus/deliveryfailure/")
    depths = page.locator("#queue-depths")
    assert depths.is_visible()
    analytics = depths.locator("tr", has_text="analytics-queue-dlq")
    admin.reload_until(
        lambda: analytics.locator("td").nth(5).inner_text().strip() == "1", timeout=90, what="analytics' DLQ depth"
    )
    # The failure's reason is kept for staff, with the receives it took.
    failure = page.locator("#result_list tbody tr", has_text="analytics-queue")
    assert failure.count() == 1
    assert "malformed" in failure.inner_text().lower()
    admin.screenshot("1-in-the-dlq")
    # Every service's queue and DLQ is in the table, and EventBridge's target DLQ.
    services = [cell.strip() for cell in depths.locator("tbody tr td:first-child").all_inner_texts()]
    assert {"orders", "inventory", "payments", "notifications", "analytics", "audit"} <= set(services)
    assert "(delivery)" in services

    # Redrive, from the page (eventbus.redrive_dead_letters): the message goes back to analytics' queue.
    # It is still poison, so after its receives it is back in the DLQ: redrive is for a fixed cause.
    assert analytics.locator("input[name=max_messages]").input_value() == "1"
    analytics.locator("input[type=submit][value='Redrive to analytics']").click()
    assert "Moved 1 message(s) from analytics-queue-dlq back to analytics-queue." in admin.message()
    admin.screenshot("2-redriven")
    admin.reload_until(
        lambda: (
            analytics.locator("td").nth(5).inner_text().strip() == "1"
            # A body with no readable eventId cannot be matched to its first failure: a row of its own.
            and "failing" in page.locator("#result_list tbody tr", has_text="analytics-queue").first.inner_text()
        ),
        timeout=90,
        what="the poison message's return to its DLQ",
    )
    admin.screenshot("3-back-in-the-dlq")

    # Support sees the same page, without the redrive.
    support = sign_in("support")
    support.goto("/admin/eventbus/deliveryfailure/")
    assert support.page.locator("#queue-depths tr", has_text="analytics-queue-dlq").is_visible()
    assert support.page.locator("form.redrive, input[value^='Redrive']").count() == 0


def test_the_event_flow_dashboard_and_an_orders_timeline(sign_in, stack, confirmed_order):
    admin = sign_in("admin")
    page = admin.page
    admin.goto("/admin/")
    page.click("text=Event flow")  # linked from the admin's index
    page.wait_for_url(re.compile(r"/admin/event-flow/"))
    assert page.get_by_role("heading", name="Queues and consumers").is_visible()
    handled = page.locator(".flow-figures div", has_text="deliveries handled").locator("strong")
    admin.reload_until(lambda: int(handled.inner_text()) > 0, what="the dashboard's delivery count")
    assert page.locator(".flow-card svg").count() >= 4  # the charts are drawn
    queues = page.locator("#queues tbody")
    assert queues.locator("tr", has_text="order-processing-queue").is_visible()
    admin.screenshot("1-event-flow")

    order_page(admin, confirmed_order)
    timeline = page.locator("#order-timeline")
    assert timeline.is_visible()
    events = [text.split("\n")[0] for text in timeline.locator("tr.timeline-event td:nth-child(2)").all_inner_texts()]
    assert {"Order Placed", "Inventory Reserved", "Payment Processed", "Order Confirmed"} <= set(events), events
    assert "not handled yet" not in timeline.locator("tr.timeline-event", has_text="Order Placed").inner_text()
    timeline.scroll_into_view_if_needed()
    admin.screenshot("2-order-timeline")
