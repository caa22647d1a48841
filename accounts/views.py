"""Account pages: the landing redirect, the account overview, and erasing the account."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from accounts import services


def home(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("chat:index")
    return redirect("account_login")


@login_required
def account(request: HttpRequest) -> HttpResponse:
    user: Any = request.user
    return render(
        request, "accounts/account.html", {"preview": services.erasure_preview(user=user)}
    )


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
        return render(request, "accounts/erased.html", {"receipt": receipt})
    status = 400 if request.method == "POST" else 200
    context = {"form": form, "preview": services.erasure_preview(user=user)}
    return render(request, "accounts/erase.html", context, status=status)
