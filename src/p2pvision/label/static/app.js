"use strict";
// The labelling page: asks the server for a task, reveals the cluster map step by step, submits the answer.
// Every text from the server or the labeller is shown through textContent (never parsed as HTML).
(() => {
  const $ = (id) => document.getElementById(id);
  const state = { name: "", task: null, step: 0, answerId: null, busy: false };

  function uuid4() {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  function status(text, isError) {
    $("status").textContent = text;
    $("status").className = isError ? "error" : "";
  }

  async function request(url, options) {
    const response = await fetch(url, options);
    let body = {};
    try { body = await response.json(); } catch (_) { body = {}; }
    if (!response.ok) throw new Error(body.error || `the server answered ${response.status}`);
    return body;
  }

  function showStep() {
    const step = state.task.steps[state.step];
    $("reveal").src = step.url;
    $("percent").textContent = `${step.percent}% of the photo visible (step ${state.step + 1} of ${state.task.steps.length})`;
    $("more").disabled = state.step + 1 >= state.task.steps.length;
  }

  async function loadTask() {
    const task = await request(`/api/task?labeller=${encodeURIComponent(state.name)}`);
    $("intro").hidden = true;
    if (task.done) {
      $("task").hidden = true;
      $("done").hidden = false;
      return;
    }
    state.task = task;
    state.step = 0;
    state.answerId = uuid4();  // generated once per task: a retried submission is stored once
    const guess = $("guess");
    guess.replaceChildren();
    for (const choice of [...task.choices, task.unsure]) {
      const option = document.createElement("option");
      option.value = choice;
      option.textContent = choice;
      guess.append(option);
    }
    guess.value = task.unsure;
    $("features").value = "";
    $("progress").textContent = `Cluster map ${task.answered + 1} of ${task.tasks}`;
    $("task").hidden = false;
    showStep();
  }

  async function submitAnswer(event) {
    event.preventDefault();
    if (state.busy) return;
    const features = $("features").value.split(",").map((f) => f.trim()).filter((f) => f.length > 0);
    if (features.length === 0) { status("Name at least one feature.", true); return; }
    const answer = {
      answer_id: state.answerId, labeller: state.name, task_id: state.task.task_id,
      reveal_step: state.step, guess: $("guess").value, features,
    };
    state.busy = true;
    $("submit").disabled = true;
    try {
      let lastError = null;
      for (let attempt = 0; attempt < 3; attempt += 1) {
        try {
          await request("/api/answers", {
            method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(answer),
          });
          lastError = null;
          break;
        } catch (error) {
          lastError = error;
          if (!(error instanceof TypeError)) break;  // only network failures are retried
          await new Promise((resolve) => setTimeout(resolve, 500 * (attempt + 1)));
        }
      }
      if (lastError) throw lastError;
      status("Saved.", false);
      await loadTask();
    } catch (error) {
      status(`Not saved: ${error.message}`, true);
    } finally {
      state.busy = false;
      $("submit").disabled = false;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("labeller").value = localStorage.getItem("p2pvision-labeller") || "";
    $("name-form").addEventListener("submit", (event) => {
      event.preventDefault();
      state.name = $("labeller").value.trim();
      if (!state.name) return;
      localStorage.setItem("p2pvision-labeller", state.name);
      loadTask().catch((error) => status(`Cannot load a task: ${error.message}`, true));
    });
    $("more").addEventListener("click", () => {
      if (state.task && state.step + 1 < state.task.steps.length) { state.step += 1; showStep(); }
    });
    $("answer").addEventListener("submit", submitAnswer);
  });
})();
