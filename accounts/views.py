"""Account pages: the landing redirect, the account overview, and erasing the account."""

from __future__ import annotations

from typing import Any

from allauth.account.views import LoginView as AllauthLoginView
from django import forms
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts import services, tokens
from accounts.models import ApiToken


def home(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("chat:index")
    return redirect("account_login")


class LoginView(AllauthLoginView):
    """allauth's login, but a login refused for too many failed attempts is a 429."""

    def form_invalid(self, form: Any) -> HttpResponse:
        response = super().form_invalid(form)
        codes = {error.code for error in form.non_field_errors().as_data()}
        if "too_many_login_attempts" in codes:
            response.status_code = 429
        return response


def _account_page(request: HttpRequest, status: int = 200, **extra: Any) -> HttpResponse:
    user: Any = request.user
    preview = services.erasure_preview(user=user)
    context = {
        "preview": preview,
        "tokens": tokens.token_list(user=user),
        "pending_review": preview.get("memories waiting for review", 0),
        **extra,
    }
    return render(request, "accounts/account.html", context, status=status)


@login_required
def account(request: HttpRequest) -> HttpResponse:
    return _account_page(request)


@login_required
@require_POST
def create_token(request: HttpRequest) -> HttpResponse:
    """Create a personal API token and show it, this once (only its hash is kept)."""
    user: Any = request.user
    try:
        _token, text = tokens.create_token(user=user, name=request.POST.get("name", ""))
    except tokens.TokenError as exc:
        return _account_page(
            request, status=exc.status, token_error=exc.message, token_name=request.POST.get("name")
        )
    return _account_page(request, new_token=text)


@login_required
@require_POST
def revoke_token(request: HttpRequest, token_id: int) -> HttpResponse:
    user: Any = request.user
    try:
        tokens.revoke_token(user=user, token_id=token_id)
    except ApiToken.DoesNotExist:
        raise Http404("No such token.") from None
    return redirect("accounts:account")


class EraseForm(forms.Form):
    password = forms.CharField(
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        label="Your password",
    )

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_password(self) -> str:
        password = self.cleaned_data["password"]
        if not self.user.check_password(password):
            raise forms.ValidationError("That password is not correct.")
        return password


@login_required
def erase(request: HttpRequest) -> HttpResponse:
    """Ask for the password again, then erase everything and show what was erased."""
    user: Any = request.user
    form = EraseForm(request.POST or None, user=user)
    if request.method == "POST" and form.is_valid():
        receipt = services.erase_account(user=user, host=request.get_host())
        logout(request)
        items = services.erased_items(receipt.counts)
        return render(request, "accounts/erased.html", {"receipt": receipt, "items": items})
    status = 400 if request.method == "POST" else 200
    context = {"form": form, "preview": services.erasure_preview(user=user)}
    return render(request, "accounts/erase.html", context, status=status)
