from django_tasks_q import task


@task
def send_receipt(order_id: int) -> None: ...
