// Every page: htmx refusals shown next to the form that sent them (its text kept), forms
// that reset only on success, and the handlers that used to be inline (CSP forbids those).
(function () {
  "use strict";

  // What to say when the server's answer carries no message of its own.
  const STATUS_TEXT = {
    400: "That was not accepted. Check what you typed and try again.",
    401: "You are signed out. Sign in again (in another tab, to keep this page); what you typed is still here.",
    403: "You seem to be signed out, or the page is too old. Reload it (copy your text first).",
    404: "This is no longer there. Reload the page.",
    409: "That clashes with something that already exists.",
    413: "That is too long.",
    429: "Too many requests. Wait a moment and try again.",
    503: "The service is busy or restarting. Try again in a moment.",
  };
  const OFFLINE_TEXT = "Could not reach the server. Check the connection and try again; what you typed is still here.";

  function describe(xhr) {
    const type = xhr.getResponseHeader("Content-Type") || "";
    const body = (xhr.responseText || "").trim();
    if (type.indexOf("application/json") === 0) {
      try {
        const detail = JSON.parse(body).detail;
        if (typeof detail === "string" && detail) return detail;
      } catch (e) { /* not JSON after all */ }
    }
    if (type.indexOf("text/plain") === 0 && body && body.length <= 300) return body;
    if (STATUS_TEXT[xhr.status]) return STATUS_TEXT[xhr.status];
    if (xhr.status >= 500) return "The server had a problem (" + xhr.status + "). Try again in a moment.";
    return "The request was refused (" + xhr.status + ").";
  }

  // The element where a form's errors go: named by data-error-slot on the form (or an
  // ancestor), else the first error slot inside its form, item or section, else the page's.
  function errorSlotFor(elt) {
    const named = elt.closest && elt.closest("[data-error-slot]");
    if (named) {
      const slot = document.querySelector(named.getAttribute("data-error-slot"));
      if (slot) return slot;
    }
    const scope = elt.closest && elt.closest("form, article, section, .card");
    const local = scope && scope.querySelector(".form-error, .composer-error");
    return local || document.getElementById("page-error");
  }

  function showError(elt, text) {
    const slot = errorSlotFor(elt);
    if (!slot) return;
    slot.textContent = text;
    slot.hidden = false;
  }

  function clearError(elt) {
    const slot = errorSlotFor(elt);
    if (slot && slot.id !== "page-error") slot.textContent = "";
    const page = document.getElementById("page-error");
    if (page) { page.textContent = ""; page.hidden = true; }
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    if (event.detail.elt.tagName === "FORM") clearError(event.detail.elt);
  });

  // htmx does not swap 4xx/5xx answers. The views answer a refusal with a short message
  // retargeted (HX-Retarget) at the form's error slot: swap that one, keeping the error
  // flag so nothing treats it as success. Others get a message chosen from their status.
  document.addEventListener("htmx:beforeSwap", function (event) {
    const xhr = event.detail.xhr;
    if (xhr.status >= 400 && xhr.getResponseHeader("HX-Retarget")) {
      event.detail.shouldSwap = true;
      event.detail.isError = true;
    }
  });

  document.addEventListener("htmx:responseError", function (event) {
    const xhr = event.detail.xhr;
    if (xhr.getResponseHeader("HX-Retarget")) return; // already swapped into its slot
    showError(event.detail.elt, describe(xhr));
  });

  document.addEventListener("htmx:sendError", function (event) {
    showError(event.detail.elt, OFFLINE_TEXT);
  });

  // Forms marked data-reset-on-success empty themselves only when the server took them.
  document.addEventListener("htmx:afterRequest", function (event) {
    const form = event.detail.elt;
    // A page-wide notice (e.g. a background refresh that failed while the server
    // restarted) goes once any request succeeds again.
    const notice = document.getElementById("page-error");
    if (notice && !notice.hidden && event.detail.successful) { notice.hidden = true; notice.textContent = ""; }
    if (form.matches && form.matches("form[data-reset-on-success]") && event.detail.successful) {
      form.reset();
      clearError(form);
    }
  });

  // Editing what a refused add/confirm form holds clears its error: the message was about the
  // old text, and otherwise stays on screen through searches, switches and other actions.
  document.addEventListener("input", function (event) {
    const form = event.target.closest && event.target.closest("form[data-reset-on-success]");
    if (!form) return;
    const slot = errorSlotFor(form);
    if (slot && slot.id !== "page-error") slot.textContent = "";
  });

  // A <details> menu closes on Escape and on a click elsewhere.
  document.addEventListener("click", function (event) {
    document.querySelectorAll("details.chat-menu[open]").forEach(function (menu) {
      if (!menu.contains(event.target)) menu.open = false;
    });
  });

  // Signing out forgets the tab's unsent chat drafts (kept in sessionStorage by chat.js).
  document.addEventListener("submit", function (event) {
    if (event.target.matches && event.target.matches("form.signout")) {
      try { sessionStorage.clear(); } catch (e) { /* storage off */ }
    }
  });

  window.mnemo = { describe: describe, showError: showError, clearError: clearError, OFFLINE_TEXT: OFFLINE_TEXT };
})();
