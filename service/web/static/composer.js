// The composer page: reorder rows, autosave, Markdown preview.
// Without this script the page still works: the row buttons and Save post the form.
(function () {
  "use strict";

  // Paste page: a problem's line number selects that line in the pasted text.
  const draft = document.getElementById("draft");
  if (draft) {
    document.addEventListener("click", function (event) {
      const link = event.target.closest("a[data-line]");
      if (!link) return;
      event.preventDefault();
      const lines = draft.value.split("\n");
      const number = Number(link.dataset.line);
      const start = lines.slice(0, number - 1).join("\n").length + (number > 1 ? 1 : 0);
      draft.focus();
      draft.setSelectionRange(start, start + (lines[number - 1] || "").length);
      const lineHeight = parseFloat(getComputedStyle(draft).lineHeight) || 20;
      draft.scrollTop = Math.max(0, (number - 3) * lineHeight);
    });
  }

  const form = document.querySelector("form[data-composer]");
  if (!form) return;

  const csrf = form.querySelector("input[name=csrf_token]").value;
  const revision = form.querySelector("input[name=revision]");
  const statusLine = document.getElementById("save-status");
  const saveButton = document.getElementById("save");
  const items = document.getElementById("items");
  const related = document.getElementById("related");
  // The page's words, in the editor's language, come from the form's data-msg-* attributes.
  const words = form.dataset;

  function fill(pattern, values) {
    return pattern.replace(/\{(\w+)\}/g, function (field, name) { return values[name]; });
  }

  let dirtySince = 0;   // time of the first change not yet saved; 0 when clean
  let changes = 0;      // bumped on every edit, to tell if one happened during a save
  let inFlight = false;
  let conflict = false;
  let submitting = false;
  let submitAfterSave = false;

  function setStatus(text, tone) {
    statusLine.textContent = text;
    statusLine.className = "save-status" + (tone ? " " + tone : "");
  }

  function markDirty() {
    changes += 1;
    if (!dirtySince) dirtySince = Date.now();
    if (!inFlight && !conflict) setStatus(words.msgUnsaved, "pending");
  }

  function renumber() {
    items.querySelectorAll("[data-row=item]").forEach(function (card, i) {
      card.querySelector(".row-number").textContent = String(i + 1);
    });
    const count = document.getElementById("item-count");
    if (count) count.textContent = String(items.children.length);
  }

  function addRow(templateId, list) {
    const template = document.getElementById(templateId);
    const row = template.content.firstElementChild.cloneNode(true);
    list.appendChild(row);
    enablePreviews(row);
    renumber();
    const first = row.querySelector("input[type=text]");
    if (first) first.focus();
    return row;
  }

  function hasText(row) {
    return Array.prototype.some.call(row.querySelectorAll("input, textarea"), function (f) {
      return f.value.trim() !== "";
    });
  }

  form.addEventListener("click", function (event) {
    const button = event.target.closest("button[data-op]");
    if (!button || !form.contains(button)) return;
    event.preventDefault();
    const op = button.dataset.op;
    const row = button.closest("[data-row]");
    if (op === "add-item") {
      addRow("item-template", items);
    } else if (op === "add-related") {
      addRow("related-template", related);
    } else if (op === "up" && row.previousElementSibling) {
      row.parentNode.insertBefore(row, row.previousElementSibling);
      button.focus();
    } else if (op === "down" && row.nextElementSibling) {
      row.parentNode.insertBefore(row.nextElementSibling, row);
      button.focus();
    } else if (op === "remove") {
      if (hasText(row) && !window.confirm(words.msgConfirmRemove)) return;
      row.remove();
    } else {
      return;
    }
    renumber();
    markDirty();
  });

  form.addEventListener("input", markDirty);

  function showSize(size) {
    const box = document.getElementById("size");
    box.className = "size " + size.level;
    document.getElementById("size-label").textContent = size.label;
    document.getElementById("size-advice").textContent = size.advice;
    const meter = document.getElementById("size-meter");
    meter.value = size.bytes;
    meter.textContent = size.label;
  }

  function markField(where, reason) {
    form.querySelectorAll("[aria-invalid]").forEach(function (f) { f.removeAttribute("aria-invalid"); });
    form.querySelectorAll(".field-error").forEach(function (e) { e.remove(); });
    if (!where) return;
    const m = /^(items|related)\[(\d+)\]\.(.+)$/.exec(where);
    let field = null;
    if (m) {
      const list = m[1] === "items" ? items : related;
      const row = list.children[Number(m[2])];
      const name = (m[1] === "items" ? "item_" : "related_") + m[3].replace(".", "_");
      field = row && row.querySelector("[name=" + name + "]");
    } else {
      field = form.querySelector("[name=" + where.replace(".", "_") + "]");
    }
    if (!field) return;
    field.setAttribute("aria-invalid", "true");
    const note = document.createElement("span");
    note.className = "field-error";
    note.textContent = reason;
    field.insertAdjacentElement("afterend", note);
  }

  async function save() {
    if (inFlight || conflict) return;
    inFlight = true;
    const seen = changes;
    setStatus(words.msgSaving, "pending");
    const body = new URLSearchParams(new FormData(form));
    body.delete("csrf_token");  // the header carries it
    body.delete("op");
    try {
      const response = await fetch(form.dataset.autosaveUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRFToken": csrf, "Accept": "application/json" },
        body: body,
      });
      let answer = null;
      try { answer = await response.json(); } catch (e) { answer = null; }
      if (response.ok && answer && answer.ok) {
        revision.value = answer.revision;
        if (changes === seen) dirtySince = 0; else dirtySince = Date.now();
        showSize(answer.size);
        markField("", "");
        setStatus(fill(dirtySince ? words.msgUnsavedSince : words.msgSavedAt, { time: answer.saved_at }),
          dirtySince ? "pending" : "ok");
      } else if (answer && response.status === 401) {
        dirtySince = Date.now();
        setStatus(answer.message, "bad");
      } else if (answer && response.status === 409) {
        conflict = Boolean(answer.conflict);
        setStatus(answer.message, "bad");
      } else if (answer && response.status === 422) {
        dirtySince = Date.now();
        markField(answer.error.where, answer.error.reason);
        setStatus(fill(words.msgNotSaved, { message: answer.message }), "bad");
      } else {
        dirtySince = Date.now();
        setStatus(fill(words.msgNotSavedStatus, { status: response.status }), "bad");
      }
    } catch (e) {
      dirtySince = Date.now();
      setStatus(words.msgUnreachable, "bad");
    } finally {
      inFlight = false;
      if (submitAfterSave) {
        submitAfterSave = false;
        form.requestSubmit(saveButton);
      }
    }
  }

  // The preview shows the saved edition: save what was typed before going there.
  document.querySelectorAll("a[data-save-first]").forEach(function (link) {
    link.addEventListener("click", async function (event) {
      if (!dirtySince) return;
      event.preventDefault();
      await save();
      if (!dirtySince) window.location.href = link.href;
    });
  });

  setInterval(function () {
    const seconds = Number(form.dataset.autosaveSeconds) || 20;
    if (dirtySince && !submitting && Date.now() - dirtySince >= seconds * 1000) save();
  }, 1000);

  document.addEventListener("keydown", function (event) {
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "s") {
      event.preventDefault();
      save();
    }
  });

  form.addEventListener("submit", function (event) {
    // A save posted while an autosave is on its way would carry a stale revision.
    if (inFlight) {
      event.preventDefault();
      submitAfterSave = true;
      return;
    }
    submitting = true;
  });

  window.addEventListener("beforeunload", function (event) {
    if (dirtySince && !submitting) {
      event.preventDefault();
      event.returnValue = "";
    }
  });

  // The preview shows HTML rendered and sanitised by the server (nh3), never the raw text.
  async function preview(button) {
    const tools = button.closest(".md-tools");
    const pane = tools.nextElementSibling;
    const source = tools.parentNode.querySelector("textarea.md") ||
      tools.previousElementSibling.querySelector("textarea.md");
    if (!pane.hidden) {
      pane.hidden = true;
      button.textContent = words.msgPreview;
      return;
    }
    const response = await fetch(form.dataset.markdownUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrf, "Content-Type": "application/json" },
      body: JSON.stringify({ text: source.value }),
    });
    if (!response.ok) return;
    const answer = await response.json();
    pane.innerHTML = answer.html;
    pane.hidden = false;
    button.textContent = words.msgHidePreview;
  }

  function enablePreviews(root) {
    root.querySelectorAll("button[data-preview]").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () { preview(button); });
    });
  }

  enablePreviews(form);
})();
