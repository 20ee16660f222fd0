// "What Eva remembers": the person's memories from GET /memories, each with a button to
// forget it, and a way to forget everything (all memories and conversations), with a confirm.

import { apiFetch } from "./access.js";

export class MemoryPanel {
  // onForgotEverything(): the page's conversation is gone from the server too.
  constructor(userId, onForgotEverything) {
    this.userId = userId;
    this.onForgotEverything = onForgotEverything;
    this.panel = document.getElementById("memories");
    this.list = document.getElementById("memory-list");
    this.empty = document.getElementById("memory-empty");
    this.forgetAllButton = document.getElementById("forget-all");
    this.panel.addEventListener("toggle", () => {
      if (this.panel.open) this.refresh();
    });
    this.forgetAllButton.addEventListener("click", () => this.forgetEverything());
  }

  query() {
    return `user_id=${encodeURIComponent(this.userId)}`;
  }

  async refresh() {
    let body;
    try {
      const response = await apiFetch(`/memories?${this.query()}`);
      if (!response.ok) return;
      body = await response.json();
    } catch {
      return; // offline for a moment: the panel keeps what it showed
    }
    this.render(body.memories || []);
  }

  render(memories) {
    this.list.replaceChildren(
      ...memories.map((memory) => {
        const item = document.createElement("li");
        item.className = "memory";
        item.dataset.id = String(memory.id);
        const text = document.createElement("span");
        text.className = "memory-text";
        text.textContent = memory.text;
        const forget = document.createElement("button");
        forget.type = "button";
        forget.className = "forget";
        forget.textContent = "Forget";
        forget.setAttribute("aria-label", `Forget: ${memory.text}`);
        forget.addEventListener("click", () => this.forget(memory.id));
        item.append(text, forget);
        return item;
      }),
    );
    this.empty.hidden = memories.length > 0;
    this.forgetAllButton.disabled = memories.length === 0;
  }

  async forget(id) {
    try {
      await apiFetch(`/memories/${id}?${this.query()}`, { method: "DELETE" });
    } finally {
      await this.refresh();
    }
  }

  async forgetEverything() {
    const sure = window.confirm(
      "Forget everything? Eva will forget all she knows about you and all your conversations.",
    );
    if (!sure) return;
    const response = await apiFetch(`/users/me?${this.query()}`, { method: "DELETE" });
    if (response.ok) this.onForgotEverything();
    await this.refresh();
  }
}
