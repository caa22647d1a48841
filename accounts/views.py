"""Account pages: the landing redirect and the account overview."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render


def home(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("chat:index")
    return redirect("account_login")


@login_required
def account(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/account.html")
