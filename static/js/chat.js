// Chat: Enter sends, replies stream over SSE (fetch + ReadableStream), Stop keeps what came.
(function () {
  "use strict";

  function csrfToken() {
    try { return JSON.parse(document.body.getAttribute("hx-headers"))["x-csrftoken"]; } catch (e) { return ""; }
  }

  function scrollToEnd() {
    const messages = document.getElementById("messages");
    if (messages) messages.scrollTop = messages.scrollHeight;
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
    if (meta) meta.innerHTML = '<span class="error-text" role="alert"></span>';
    if (meta) meta.firstChild.textContent = text;
    article.classList.add("status-failed");
  }

  async function stream(article) {
    const url = article.dataset.streamUrl;
    const stopUrl = article.dataset.stopUrl;
    article.removeAttribute("data-stream-url");
    const content = article.querySelector(".content");
    const controller = new AbortController();
    let text = "";
    const stopButton = article.querySelector(".stop-button");
    if (stopButton) {
      stopButton.addEventListener("click", function () {
        stopButton.disabled = true;
        // Ask the server to stop (it saves what came and ends the stream); if it cannot
        // answer quickly, drop the connection, which stops the generation too.
        fetch(stopUrl, { method: "POST", headers: { "X-CSRFToken": csrfToken() } });
        setTimeout(function () { controller.abort(); }, 3000);
      });
    }
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        headers: { "X-CSRFToken": csrfToken(), "Accept": "text/event-stream" },
        signal: controller.signal,
      });
    } catch (e) {
      showFailure(article, "Could not reach the server. Reload the page to retry.");
      return;
    }
    if (!response.ok || !response.body) {
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
            text += payload.text;
            content.textContent = text;
            article.classList.add("status-streaming");
            scrollToEnd();
          } else if (event === "done") {
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
    // The stream ended without a final event (aborted or cut): show the saved state.
    setTimeout(function () { window.location.reload(); }, 800);
  }

  function startStreams(root) {
    (root || document).querySelectorAll("article[data-stream-url]").forEach(function (article) {
      stream(article);
    });
  }

  document.addEventListener("keydown", function (event) {
    const target = event.target;
    if (target.matches && target.matches(".composer textarea") && event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      if (target.value.trim()) htmx.trigger(target.form, "submit");
    }
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    const form = event.detail.elt;
    if (form && form.id === "composer" && event.detail.successful) {
      form.reset();
      const error = document.getElementById("composer-error");
      if (error) error.textContent = "";
      const empty = document.getElementById("empty-state");
      if (empty) empty.remove();
    }
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    startStreams(event.detail.elt.parentElement || document);
    scrollToEnd();
  });

  document.addEventListener("DOMContentLoaded", function () {
    startStreams(document);
    scrollToEnd();
  });
})();
