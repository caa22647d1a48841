// Chat: Enter sends, replies stream over SSE (fetch + ReadableStream), Stop keeps what came,
// a refused send keeps its text, the pane follows new tokens unless the person scrolled up,
// and on a phone the conversation list is a drawer.
(function () {
  "use strict";

  // How long a reply may wait for its first token before the page says so (milliseconds);
  // #messages may override them (data-wait-ms, data-still-wait-ms).
  const WAIT_MS = 4000;
  const STILL_WAIT_MS = 20000;
  // Within this many pixels of the bottom, the pane counts as "at the newest message".
  const NEAR_BOTTOM = 80;

  let followNewest = true;

  function csrfToken() {
    try { return JSON.parse(document.body.getAttribute("hx-headers"))["x-csrftoken"]; } catch (e) { return ""; }
  }

  function pane() { return document.getElementById("messages"); }

  function scrollToEnd(force) {
    const messages = pane();
    if (!messages) return;
    if (force) followNewest = true;
    if (followNewest) messages.scrollTop = messages.scrollHeight;
  }

  function trackScroll() {
    const messages = pane();
    if (!messages || messages.dataset.tracked) return;
    messages.dataset.tracked = "1";
    messages.addEventListener("scroll", function () {
      followNewest = messages.scrollHeight - messages.scrollTop - messages.clientHeight <= NEAR_BOTTOM;
    }, { passive: true });
  }

  function replaceMessage(article, html) {
    const holder = document.createElement("div");
    holder.innerHTML = html.trim();
    const fresh = holder.firstElementChild;
    article.replaceWith(fresh);
    htmx.process(fresh);
    startStreams(fresh.parentElement || document);
    return fresh;
  }

  function showFailure(article, text) {
    const meta = article.querySelector(".message-meta");
    if (meta) {
      const span = document.createElement("span");
      span.className = "error-text";
      span.setAttribute("role", "alert");
      span.textContent = text;
      meta.replaceChildren(span);
    }
    article.classList.add("status-failed");
  }

  // "Waiting for the model…", then "Still waiting…", until the first token arrives.
  function waitNotice(article) {
    const meta = article.querySelector(".message-meta");
    const note = document.createElement("span");
    note.className = "wait-note muted";
    note.setAttribute("role", "status");
    if (meta) meta.insertBefore(note, meta.querySelector(".stop-button"));
    const messages = pane();
    const waitMs = Number(messages && messages.dataset.waitMs) || WAIT_MS;
    const stillMs = Number(messages && messages.dataset.stillWaitMs) || STILL_WAIT_MS;
    const timers = [
      setTimeout(function () { note.textContent = "Waiting for the model…"; scrollToEnd(); }, waitMs),
      setTimeout(function () { note.textContent = "Still waiting — the local model may be busy."; scrollToEnd(); }, stillMs),
    ];
    return function clear() {
      timers.forEach(clearTimeout);
      note.remove();
    };
  }

  // A reply that another connection is writing (this tab was reloaded mid-stream, or the
  // chat is open twice): ask for it as it stands until it is complete, stopped or failed,
  // then show that, instead of "typing" forever.
  const WATCH_MS = 1500;
  const WATCH_LIMIT = 400; // about ten minutes

  function watch(article, url) {
    article.removeAttribute("data-watch-url");
    const stopUrl = article.dataset.stopUrl;
    const stopButton = article.querySelector(".stop-button");
    if (stopButton && stopUrl && !stopButton.dataset.bound) {
      stopButton.dataset.bound = "1";
      stopButton.addEventListener("click", function () {
        stopButton.disabled = true;
        fetch(stopUrl, { method: "POST", headers: { "X-CSRFToken": csrfToken() } });
      });
    }
    let tries = 0;
    async function check() {
      if (!article.isConnected) return;
      tries += 1;
      let response = null;
      try {
        // As htmx asks: a signed-out page gets a 401 and a message, not the sign-in page.
        response = await fetch(url, { headers: { "HX-Request": "true", "Accept": "text/html" } });
      } catch (e) { /* offline for a moment: ask again */ }
      if (response && response.ok) {
        const html = await response.text();
        const holder = document.createElement("div");
        holder.innerHTML = html.trim();
        const fresh = holder.firstElementChild;
        if (fresh && fresh.matches("article.message") && !/\bstatus-(pending|streaming)\b/.test(fresh.className)) {
          replaceMessage(article, html);
          scrollToEnd();
          document.body.dispatchEvent(new CustomEvent("conversations-changed"));
          return;
        }
      } else if (response && response.status < 500) {
        let detail = "This reply can no longer be shown. Reload the page.";
        const type = response.headers.get("Content-Type") || "";
        if (type.indexOf("text/plain") === 0) {
          const body = (await response.text()).trim();
          if (body && body.length <= 300) detail = body;
        }
        showFailure(article, detail);
        return;
      }
      if (tries >= WATCH_LIMIT) {
        showFailure(article, "This reply is taking very long. Reload the page to see where it is.");
        return;
      }
      setTimeout(check, WATCH_MS);
    }
    setTimeout(check, WATCH_MS);
  }

  async function stream(article) {
    const url = article.dataset.streamUrl;
    const stopUrl = article.dataset.stopUrl;
    const watchUrl = article.dataset.watchUrl;
    article.removeAttribute("data-stream-url");
    article.removeAttribute("data-watch-url");
    const content = article.querySelector(".content");
    // A reply that goes on after being cut short keeps its text; new text follows it.
    let target = content;
    if (article.hasAttribute("data-continuing")) {
      target = document.createElement("span");
      target.className = "continued";
      (content.lastElementChild || content).append(target);
    }
    const controller = new AbortController();
    let text = "";
    const stopButton = article.querySelector(".stop-button");
    if (stopButton) {
      stopButton.dataset.bound = "1";
      stopButton.addEventListener("click", function () {
        stopButton.disabled = true;
        // Ask the server to stop (it saves what came and ends the stream); if it cannot
        // answer quickly, drop the connection, which stops the generation too.
        fetch(stopUrl, { method: "POST", headers: { "X-CSRFToken": csrfToken() } });
        setTimeout(function () { controller.abort(); }, 3000);
      });
    }
    let clearWait = waitNotice(article);
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        headers: { "X-CSRFToken": csrfToken(), "Accept": "text/event-stream" },
        signal: controller.signal,
      });
    } catch (e) {
      clearWait();
      showFailure(article, "Could not reach the server. Reload the page to retry.");
      return;
    }
    if (response.status === 409 && watchUrl) {
      // Another connection took this reply first (the page was reloaded while it started):
      // show it as that one writes it.
      clearWait();
      watch(article, watchUrl);
      return;
    }
    if (!response.ok || !response.body) {
      clearWait();
      let detail = "The reply could not be started.";
      try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
      showFailure(article, detail);
      return;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let boundary;
        while ((boundary = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, boundary);
          buffer = buffer.slice(boundary + 2);
          let event = "message", data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event: ")) event = line.slice(7);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (!data) continue;
          const payload = JSON.parse(data);
          if (event === "token") {
            clearWait();
            clearWait = function () {};
            text += payload.text;
            target.textContent = text;
            article.classList.add("status-streaming");
            scrollToEnd();
          } else if (event === "done") {
            clearWait();
            article = replaceMessage(article, payload.html);
            scrollToEnd();
            document.body.dispatchEvent(new CustomEvent("conversations-changed"));
            return;
          }
        }
      }
    } catch (e) {
      if (e.name !== "AbortError") console.warn("stream ended", e);
    }
    clearWait();
    // The stream ended without a final event (aborted or cut): show the saved state.
    setTimeout(function () { window.location.reload(); }, 800);
  }

  function startStreams(root) {
    (root || document).querySelectorAll("article[data-stream-url]").forEach(function (article) {
      stream(article);
    });
    (root || document).querySelectorAll("article[data-watch-url]").forEach(function (article) {
      watch(article, article.dataset.watchUrl);
    });
  }

  // --- The composer: Enter sends; the text stays until the server has taken it ---

  function draftKey(form) { return "mnemo-draft:" + form.getAttribute("hx-post"); }

  document.addEventListener("keydown", function (event) {
    const target = event.target;
    if (target.matches && target.matches(".composer textarea") && event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      if (target.value.trim()) htmx.trigger(target.form, "submit");
    }
    if (event.key === "Escape") closeDrawer();
  });

  // A draft survives a reload (the refusal messages say "reload the page").
  document.addEventListener("input", function (event) {
    const form = event.target.form;
    if (form && form.id === "composer") {
      try { sessionStorage.setItem(draftKey(form), event.target.value); } catch (e) { /* storage off */ }
    }
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    const form = event.detail.elt;
    if (!form || form.id !== "composer") return;
    // Only a 2xx answer means the message was saved; a refusal (413, 429, 400, 503, …)
    // left its message in #composer-error and the text stays in the box.
    if (event.detail.successful && event.detail.xhr.status < 300) {
      form.reset();
      try { sessionStorage.removeItem(draftKey(form)); } catch (e) { /* storage off */ }
      const empty = document.getElementById("empty-state");
      if (empty) empty.remove();
      scrollToEnd(true);
    } else {
      const box = form.querySelector("textarea");
      if (box) box.focus();
    }
  });

  function restoreDraft() {
    const form = document.getElementById("composer");
    if (!form) return;
    const box = form.querySelector("textarea");
    try {
      const draft = sessionStorage.getItem(draftKey(form));
      if (box && draft && !box.value) box.value = draft;
    } catch (e) { /* storage off */ }
  }

  // --- Phone: the conversation list is a drawer behind a button ---

  function setDrawer(open) {
    document.body.classList.toggle("drawer-open", open);
    document.querySelectorAll(".drawer-toggle").forEach(function (button) {
      button.setAttribute("aria-expanded", open ? "true" : "false");
    });
    const backdrop = document.getElementById("drawer-backdrop");
    if (backdrop) backdrop.hidden = !open;
  }

  function closeDrawer() {
    if (document.body.classList.contains("drawer-open")) setDrawer(false);
  }

  document.addEventListener("click", function (event) {
    const toggle = event.target.closest && event.target.closest(".drawer-toggle");
    if (toggle) {
      setDrawer(!document.body.classList.contains("drawer-open"));
      if (document.body.classList.contains("drawer-open")) {
        const first = document.querySelector("#chat-sidebar button, #chat-sidebar a");
        if (first) first.focus();
      }
    } else if (event.target.id === "drawer-backdrop") {
      closeDrawer();
    }
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    startStreams(event.detail.elt.parentElement || document);
    scrollToEnd();
  });

  document.addEventListener("DOMContentLoaded", function () {
    trackScroll();
    restoreDraft();
    startStreams(document);
    scrollToEnd(true);
  });
  // Fonts and layout can still change heights after DOMContentLoaded: open at the newest.
  window.addEventListener("load", function () { scrollToEnd(); });
})();
