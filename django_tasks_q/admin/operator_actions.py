"""The operator's actions (``actions.py``) as admin actions: each asks on a
page of its own, then runs its operation and says what it did."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from ..actions import Confirmation, OperatorAction, actions_on

CONFIRM_MAX_DISPLAY = 20  # rows listed on a confirmation page

if TYPE_CHECKING:
    AdminAction = Callable[
        [admin.ModelAdmin[Any], HttpRequest, QuerySet[Any]], TemplateResponse | None
    ]


def confirmation_page(
    modeladmin: admin.ModelAdmin[Any],
    request: HttpRequest,
    queryset: QuerySet[Any],
    confirmation: Confirmation,
) -> TemplateResponse | None:
    """The page that asks before an action runs; None once it has been answered.

    It posts the same action back to the same changelist URL (so with the same
    filters) with ``confirm=yes``: the selected ids, or ``select_across`` for
    every row the filters match, never a hidden input per matching row.
    """
    if request.POST.get("confirm") == "yes":
        return None
    objects, count = list(queryset[:CONFIRM_MAX_DISPLAY]), queryset.count()
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": confirmation.title,
        "question": confirmation.question,
        "button": confirmation.button,
        "opts": modeladmin.opts,
        "objects": objects,
        "count": count,
        "more": count - len(objects),
        "action": request.POST.get("action", ""),
        "select_across": request.POST.get("select_across") in ("1", "True", "true"),
        "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "media": modeladmin.media,
    }
    request.current_app = modeladmin.admin_site.name
    return TemplateResponse(request, "admin/django_tasks_q/confirm_action.html", context)


def admin_action(declared: OperatorAction) -> AdminAction:
    """``declared`` as a ModelAdmin action: confirm, operate, say what it did."""

    def act(
        modeladmin: admin.ModelAdmin[Any], request: HttpRequest, queryset: QuerySet[Any]
    ) -> TemplateResponse | None:
        if declared.confirmation is not None:
            page = confirmation_page(modeladmin, request, queryset, declared.confirmation)
            if page is not None:
                return page
        selected = queryset.count() if declared.left_alone is not None else None
        counts = declared.operate(queryset)
        for text, warning in declared.report(counts, selected):
            modeladmin.message_user(
                request, text, messages.WARNING if warning else messages.SUCCESS
            )
        return None

    act.__name__ = declared.name  # what the action menu and the detail page's forms post
    return admin.action(act, description=declared.description, permissions=[declared.permission])


def admin_actions(model: type[Model]) -> list[AdminAction]:
    """The actions declared for ``model``'s rows, for a ModelAdmin's ``actions``."""
    return [admin_action(declared) for declared in actions_on(model)]
