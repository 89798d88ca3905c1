from django.db import transaction
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from django_tasks_q.compat import TaskResultDoesNotExist

from . import tasks

RECENT = 20  # results listed on the page


@require_POST
def enqueue(request):
    """Enqueue inside the view's transaction: if the view fails, no task is left."""
    kind = request.POST.get("kind")
    with transaction.atomic():
        match kind:
            case "add":
                result = tasks.add.enqueue(2, 3)
            case "email":
                result = tasks.send_welcome_email.enqueue(request.POST.get("address", ""))
            case "flaky":
                result = tasks.flaky.enqueue(succeed_on_attempt=2)
            case "slow":
                result = tasks.slow.enqueue(2)
            case "async":
                result = tasks.fetch_async.enqueue(0.5)
            case _:
                return JsonResponse({"error": f"unknown kind {kind!r}"}, status=400)
    request.session["recent"] = [result.id, *request.session.get("recent", [])][:RECENT]
    return redirect("index")


def _describe(result):
    return {
        "id": result.id,
        "task": result.task.name,
        "status": result.status,
        "attempts": result.attempts,
        "return_value": result.return_value if result.status == "SUCCESSFUL" else None,
        "error": result.errors[-1].traceback.strip().splitlines()[-1] if result.errors else "",
    }


def index(request):
    results = []
    for result_id in request.session.get("recent", []):
        try:
            results.append(_describe(tasks.add.get_backend().get_result(result_id)))
        except TaskResultDoesNotExist:
            continue
    return render(request, "testproject/index.html", {"results": results})


def result(request, result_id):
    try:
        found = tasks.add.get_backend().get_result(result_id)
    except TaskResultDoesNotExist:
        raise Http404("No such task") from None
    return JsonResponse(_describe(found))
