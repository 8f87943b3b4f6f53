"""Admin actions that need input first (a reason, a quantity) render one shared intermediate page."""

from __future__ import annotations

from django import forms
from django.contrib import admin
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
