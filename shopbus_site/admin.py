"""Admin helpers shared by every app's admin: a read-only ModelAdmin, a list filter over known values,
and the intermediate page of an admin action that needs input first (a reason, a quantity). These
import nothing of shopbus's own, so any app's admin module can use them (docs/architecture.md,
"Layout")."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.template.response import TemplateResponse


def action_form_page(
    model_admin: admin.ModelAdmin,
    request,
    queryset,
    *,
    form: forms.Form,
    action: str,
    title: str,
    submit_label: str,
    intro: str = "",
) -> TemplateResponse:
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "intro": intro,
        "opts": model_admin.model._meta,
        "objects": queryset,
        "form": form,
        "action": action,
        "submit_label": submit_label,
        "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "admin/action_form.html", context)


class PermissionGuardedActions:
    """ModelAdmin mixin for actions behind permissions (`allowed_permissions`): a user without one
    does not see the action, and a forged POST of it is refused with 403 rather than Django's quiet
    "No action selected"."""

    def changelist_view(self, request, extra_context=None):
        action = request.POST.get("action") if request.method == "POST" else None
        if action and action not in self.get_actions(request):
            raise PermissionDenied(f"You may not run {action!r} here.")
        return super().changelist_view(request, extra_context)


def known_values_filter(field: str, title: str, values: Callable[[], Iterable[str]]) -> type[admin.SimpleListFilter]:
    """A list filter on `field` offering the values shopbus knows (its event types, its handlers).

    Django's default filter for a CharField without choices lists what the table holds, with a
    SELECT DISTINCT over every row on every page load: a full scan once the table is large
    (docs/performance.md, "The admin at volume")."""

    class KnownValuesFilter(admin.SimpleListFilter):
        parameter_name = field

        def lookups(self, request, model_admin):
            return [(value, value) for value in sorted(set(values()))]

        def queryset(self, request, queryset):
            return queryset.filter(**{field: self.value()}) if self.value() else queryset

    KnownValuesFilter.title = title
    KnownValuesFilter.__name__ = f"{field.title().replace('_', '')}Filter"
    return KnownValuesFilter


class IdentifierSearch:
    """The admin's search box, for identifiers: a term that is a UUID matches `uuid_search_fields`
    exactly, any term matches `text_search_fields` exactly, and a term with an @ matches
    `email_search_fields` whatever its case. Every comparison can use an index.

    Django's own prefixes cannot: "=field" is `iexact`, which PostgreSQL runs as
    UPPER(field::text) = UPPER(term) over every row, and the OR of several search fields scans the
    table if any one of them cannot use an index (docs/performance.md, "The admin at volume").
    """

    uuid_search_fields: tuple[str, ...] = ()
    text_search_fields: tuple[str, ...] = ()
    email_search_fields: tuple[str, ...] = ()

    def get_search_fields(self, request):
        # Non-empty, so that the changelist shows the box; the lookups below are what runs.
        return (*self.uuid_search_fields, *self.text_search_fields, *self.email_search_fields)

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        conditions = Q(pk__in=[])  # matches nothing: a term that fits no field finds nothing
        try:
            as_uuid = uuid.UUID(term)
        except ValueError:
            as_uuid = None
        if as_uuid is not None:
            for field in self.uuid_search_fields:
                conditions |= Q(**{field: as_uuid})
        for field in self.text_search_fields:
            conditions |= Q(**{field: term})
        if "@" in term:
            for field in self.email_search_fields:
                conditions |= Q(**{f"{field}__iexact": term})
        return queryset.filter(conditions), False


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records that only the system writes (events, payments, audit): staff may look, never edit."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
