/* The operator page: reads the admin API with the key kept in sessionStorage, draws the running
   runs (with Cancel), the periodic jobs, their recent runs and success rates, the retry queue, the
   dead letters (with Replay), the bulk replay of dead letters by filter and the model usage under
   the shared LLM limits. */
(function () {
  "use strict";
  var KEY = "focus.adminKey";
  var PAGE_SIZE = 20;
  var $ = function (id) { return document.getElementById(id); };
  var pages = { retry: 1, dead: 1 };
  var chart = null;

  function AuthError(message) { this.message = message; }

  function show(id, visible) { $(id).hidden = !visible; }

  function fail(message) {
    $("error").textContent = message;
    show("error", true);
  }

  function api(path, method, body) {
    var headers = { "X-API-Key": sessionStorage.getItem(KEY) || "" };
    if (body !== undefined) { headers["Content-Type"] = "application/json"; }
    return fetch("/api/v1" + path, {
      method: method || "GET",
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        if (response.status === 401 || response.status === 403) {
          sessionStorage.removeItem(KEY);
          throw new AuthError("That admin key was not accepted (" + response.status + ": " +
                              (body.message || "unauthorised") + "). Enter the key again.");
        }
        if (!response.ok) {
          throw new Error("The server answered " + response.status + " for " + path +
                          (body.message ? ": " + body.message : "") + fieldErrors(body.errors));
        }
        return body;
      });
    });
  }

  function fieldErrors(errors) {
    // 422: {"json": {"context_type": ["..."]}} -> " (context_type: ...)"
    var parts = [];
    Object.keys(errors || {}).forEach(function (location) {
      var fields = errors[location];
      Object.keys(fields || {}).forEach(function (name) {
        parts.push(name + ": " + [].concat(fields[name]).join(" "));
      });
    });
    return parts.length ? " (" + parts.join("; ") + ")" : "";
  }

  // --- formatting -------------------------------------------------------------------------

  function relative(date) {
    var seconds = Math.round((date.getTime() - Date.now()) / 1000);
    var size = Math.abs(seconds);
    var text = size < 60 ? size + " s" : size < 3600 ? Math.round(size / 60) + " min" :
               size < 172800 ? Math.round(size / 3600) + " h" : Math.round(size / 86400) + " days";
    return seconds >= 0 ? "in " + text : text + " ago";
  }

  function when(iso) {
    if (!iso) { return "–"; }
    var date = new Date(iso);
    return date.toLocaleString() + " (" + relative(date) + ")";
  }

  function duration(ms) {
    if (ms == null) { return "–"; }
    return ms < 1000 ? ms + " ms" : ms < 120000 ? (ms / 1000).toFixed(1) + " s" : Math.round(ms / 60000) + " min";
  }

  function percent(rate) { return rate == null ? "–" : Math.round(rate * 1000) / 10 + "%"; }

  function element(tag, text, className) {
    var node = document.createElement(tag);
    if (text != null) { node.textContent = text; }
    if (className) { node.className = className; }
    return node;
  }

  function badge(status) { return element("span", status, "badge status-" + status); }

  function cell(row, label, content, className) {
    var td = element("td", null, className);
    td.dataset.label = label;
    if (content instanceof Node) { td.appendChild(content); } else { td.textContent = content; }
    row.appendChild(td);
    return td;
  }

  function fill(bodyId, items, draw) {
    var body = $(bodyId);
    body.textContent = "";
    items.forEach(function (item) { body.appendChild(draw(item)); });
  }

  // --- periodic jobs ------------------------------------------------------------------------

  function lastRun(run, lastSuccess) {
    if (!run) {
      // Jobs that write no run rows (the sweeper, the archive) leave only their success stamp.
      return document.createTextNode(lastSuccess ? "succeeded " + when(lastSuccess) : "never recorded");
    }
    var span = element("span");
    span.appendChild(badge(run.status));
    span.appendChild(document.createTextNode(" " + when(run.started_at) + " · " + duration(run.duration_ms) +
      " · " + run.succeeded + " ok, " + run.failed + " failed, " + run.skipped + " skipped"));
    return span;
  }

  function jobRow(job) {
    var row = element("tr");
    row.dataset.task = job.task;
    cell(row, "Job", job.task);
    cell(row, "Schedule", job.schedule);
    cell(row, "Enabled", job.enabled ? "yes" : "disabled", job.enabled ? null : "off");
    cell(row, "Last run", lastRun(job.last_run, job.last_success_at)).title = job.last_success_at ?
      "last success " + new Date(job.last_success_at).toLocaleString() : "no success recorded";
    cell(row, "Success rate", job.success_rate == null ? "no finished runs" :
      percent(job.success_rate) + " of " + job.runs_counted);
    cell(row, "Next run", job.due ? "due now" : when(job.next_run_at), job.due ? "due" : null);
    return row;
  }

  function runRow(run) {
    var row = element("tr");
    cell(row, "Started", when(run.started_at));
    cell(row, "Trigger", run.trigger + (run.scope ? " (" + run.scope + ")" : ""));
    cell(row, "Status", badge(run.status));
    cell(row, "Duration", duration(run.duration_ms));
    cell(row, "Counts", run.succeeded + " ok / " + run.failed + " failed / " + run.skipped + " skipped");
    cell(row, "Error", run.error || "", "error-text");
    return row;
  }

  function renderRecent(jobs) {
    var holder = $("recent-runs");
    var open = {};
    holder.querySelectorAll("details[open]").forEach(function (d) { open[d.dataset.task] = true; });
    holder.textContent = "";
    jobs.forEach(function (job) {
      var details = element("details");
      details.dataset.task = job.task;
      details.open = !!open[job.task];
      var summary = element("summary", job.task + " · " + job.recent_runs.length + " recent runs");
      var strip = element("span", null, "strip");
      job.recent_runs.slice().reverse().forEach(function (run) {
        var mark = element("i", null, "status-" + run.status);
        mark.title = run.status + " " + new Date(run.started_at).toLocaleString();
        strip.appendChild(mark);
      });
      summary.appendChild(strip);
      details.appendChild(summary);
      if (job.recent_runs.length === 0) {
        details.appendChild(element("p", "No runs recorded for this job.", "empty"));
      } else {
        var table = element("table", null, "stack");
        var head = element("tr");
        ["Started", "Trigger", "Status", "Duration", "Counts", "Error"].forEach(function (title) {
          head.appendChild(element("th", title));
        });
        table.appendChild(element("thead")).appendChild(head);
        var body = table.appendChild(element("tbody"));
        job.recent_runs.forEach(function (run) { body.appendChild(runRow(run)); });
        details.appendChild(table);
      }
      holder.appendChild(details);
    });
  }

  function shortLabel(label) {
    // On a phone the task names would push the bars off the canvas: keep their ends.
    var room = window.innerWidth < 640 ? 16 : 40;
    return label.length > room ? "…" + label.slice(label.length - room + 1) : label;
  }

  function renderChart(overview) {
    var jobs = overview.jobs;
    var rates = jobs.map(function (job) { return job.success_rate == null ? null : job.success_rate * 100; });
    var any = rates.some(function (rate) { return rate != null; });
    $("chart-note").textContent = "last " + overview.success_rate_window + " finished runs per job";
    show("chart-empty", !any);
    if (chart) { chart.destroy(); }
    chart = new Chart($("chart-success"), {
      type: "bar",
      data: {
        labels: jobs.map(function (job) { return job.task; }),
        datasets: [{
          label: "Success rate (%)",
          data: rates,
          backgroundColor: rates.map(function (rate) {
            return rate == null ? "#c9ced9" : rate >= 95 ? "#1f8a4c" : rate >= 80 ? "#d08a00" : "#c62828";
          })
        }]
      },
      options: {
        indexAxis: "y",
        animation: false,
        maintainAspectRatio: false,
        plugins: { legend: { display: false } },
        scales: {
          x: { min: 0, max: 100, ticks: { callback: function (v) { return v + "%"; } } },
          y: { ticks: { callback: function (v) { return shortLabel(this.getLabelForValue(v)); } } }
        }
      }
    });
  }

  function renderJobs(overview) {
    $("jobs-note").textContent = "crontab times in " + overview.timezone;
    fill("jobs-body", overview.jobs, jobRow);
    renderRecent(overview.jobs);
    renderChart(overview);
    $("warnings").textContent = overview.warnings.join(" ");
    show("warnings", overview.warnings.length > 0);
  }

  // --- retry queue and dead letters --------------------------------------------------------

  function retryRow(entry) {
    var row = element("tr");
    cell(row, "Job", entry.job_name);
    cell(row, "User", entry.user_id);
    cell(row, "Week", entry.week_of);
    cell(row, "Status", badge(entry.status));
    cell(row, "Attempts", entry.retry_count + " of " + entry.max_retries);
    cell(row, "Next attempt", entry.status === "pending" ? when(entry.next_retry_at) : "parked");
    cell(row, "Last error", entry.last_error || "", "error-text");
    return row;
  }

  function failedJobRow(job, attempts) {
    var row = element("tr");
    row.dataset.jobId = job.id;
    cell(row, "Job", job.id.slice(0, 8)).title = job.id;
    cell(row, "User", job.user_id);
    cell(row, "Context", job.context_type);
    if (attempts) { cell(row, "Attempts", String(job.attempts)); }
    cell(row, "Failed at", when(job.completed_at));
    cell(row, "Error", job.error || "", "error-text");
    return row;
  }

  function deadRow(job) {
    var row = failedJobRow(job, true);
    var button = element("button", "Replay", "replay");
    button.type = "button";
    var action = cell(row, "Replay", button);
    button.addEventListener("click", function () { replay(job, row, button, action); });
    return row;
  }

  function replay(job, row, button, action) {
    button.disabled = true;
    button.textContent = "Replaying…";
    api("/admin/analysis-jobs/" + job.id + "/replay", "POST").then(function (answer) {
      row.dataset.status = answer.status;
      row.querySelector("td[data-label=Error]").textContent = "";
      action.textContent = "";
      action.appendChild(badge(answer.status));
      action.appendChild(element("span", answer.task_id ? " task " + answer.task_id :
        " queued; the broker is down, the sweeper publishes it", "replayed"));
    }).catch(function (error) {
      if (error instanceof AuthError) { signIn(error.message); return; }
      button.disabled = false;
      button.textContent = "Replay";
      row.querySelector("td[data-label=Error]").textContent = error.message;
    });
  }

  function renderList(name, page, bodyId, draw) {
    fill(bodyId, page.items, draw);
    show(name + "-empty", page.total === 0);
    show(name + "-table", page.items.length > 0);
    var count = Math.max(1, Math.ceil(page.total / PAGE_SIZE));
    var pager = document.querySelector(".pager[data-list=" + name + "]");
    pager.hidden = count <= 1;
    pager.querySelector("[data-page]").textContent = "page " + page.page + " of " + count;
    pager.querySelector("[data-step='-1']").disabled = page.page <= 1;
    pager.querySelector("[data-step='1']").disabled = page.page >= count;
  }

  function renderRetry(page) {
    renderList("retry", page, "retry-body", retryRow);
    $("retry-total").textContent = page.total + (page.total === 1 ? " entry" : " entries");
  }

  function renderDead(page) {
    renderList("dead", page, "dead-body", deadRow);
    $("dead-total").textContent = "failed analysis jobs: " + page.total;
  }

  // --- operator control: running runs (Cancel) and bulk replay -------------------------------

  function progress(run) {
    var text = run.units_done + " of " + run.units_total + " units · " + run.succeeded + " ok, " +
      run.failed + " failed, " + run.skipped + " skipped";
    var cancelled = run.result && run.result.cancelled_units;
    return cancelled ? text + " · " + cancelled + " units cancelled" : text;
  }

  function runningRow(run) {
    var row = element("tr");
    row.dataset.runId = run.id;
    cell(row, "Job", run.job_name);
    cell(row, "Trigger", run.trigger + (run.scope ? " (" + run.scope + ")" : ""));
    cell(row, "Started", when(run.started_at));
    var counts = cell(row, "Progress", progress(run));
    var button = element("button", "Cancel", "cancel");
    button.type = "button";
    var action = cell(row, "Cancel", button);
    button.addEventListener("click", function () { cancelRun(run, row, button, action, counts); });
    return row;
  }

  function cancelRun(run, row, button, action, counts) {
    button.disabled = true;
    button.textContent = "Cancelling…";
    api("/admin/job-runs/" + run.id + "/cancel", "POST").then(function (answer) {
      row.dataset.status = answer.status;
      counts.textContent = progress(answer);
      action.textContent = "";
      action.appendChild(badge(answer.status));
    }).catch(function (error) {
      if (error instanceof AuthError) { signIn(error.message); return; }
      button.disabled = false;
      button.textContent = "Cancel";
      counts.textContent = error.message;
    });
  }

  function renderRunning(page) {
    fill("running-body", page.items, runningRow);
    show("running-empty", page.total === 0);
    show("running-table", page.items.length > 0);
    $("running-total").textContent = page.total ? page.total + " running" : "";
  }

  var FILTER_FIELDS = ["error", "context_type", "user_id", "failed_since", "failed_until"];

  function filterText(filter) {
    var names = FILTER_FIELDS.filter(function (name) { return filter && filter[name] != null; });
    return names.length ? names.map(function (name) { return name + " " + filter[name]; }).join(", ") :
      "every dead letter";
  }

  function replayRunRow(run) {
    var row = element("tr");
    row.dataset.runId = run.id;
    cell(row, "Started", when(run.started_at));
    cell(row, "By", run.trigger === "api" ? "this page / API" : "celery call");
    cell(row, "Filter", filterText(run.result && run.result.filter));
    cell(row, "Status", badge(run.status));
    cell(row, "Replayed", run.succeeded + " of " + ((run.result && run.result.matched) || 0));
    cell(row, "Skipped", String(run.skipped));
    return row;
  }

  function renderReplays(page) {
    fill("replays-body", page.items, replayRunRow);
    show("replays-empty", page.total === 0);
    show("replays-table", page.items.length > 0);
    $("replays-total").textContent = page.total ? "last " + page.items.length + " of " + page.total : "";
  }

  var previewed = null;  // the filter the Replay button replays: the one last previewed

  function replayFilter() {
    var form = $("replay-form");
    var filter = {};
    FILTER_FIELDS.slice(0, 3).forEach(function (name) {
      var value = form.elements[name].value.trim();
      if (value) { filter[name] = value; }
    });
    FILTER_FIELDS.slice(3).forEach(function (name) {
      var value = form.elements[name].value;  // local time of this browser
      if (value) { filter[name] = new Date(value).toISOString(); }
    });
    return filter;
  }

  function outcome(text, problem) {
    var node = $("replay-outcome");
    node.textContent = text;
    node.classList.toggle("problem", !!problem);
    show("replay-outcome", true);
  }

  function previewReplay() {
    var filter = replayFilter();
    var button = $("replay-run");
    button.disabled = true;
    previewed = null;
    api("/admin/analysis-jobs/replay", "POST", Object.assign({ dry_run: true }, filter)).then(function (answer) {
      previewed = filter;
      outcome(answer.matched + (answer.matched === 1 ? " failed job matches" : " failed jobs match") +
        " (" + filterText(filter) + ")" + (answer.matched > answer.sample.length ?
        "; the " + answer.sample.length + " most recent below" : ""));
      fill("replay-sample-body", answer.sample, function (job) { return failedJobRow(job, false); });
      show("replay-sample", answer.sample.length > 0);
      button.textContent = "Replay " + answer.matched + (answer.matched === 1 ? " job" : " jobs");
      button.disabled = answer.matched === 0;
    }).catch(function (error) {
      if (error instanceof AuthError) { signIn(error.message); return; }
      outcome(error.message, true);
      show("replay-sample", false);
    });
  }

  function runReplay() {
    var button = $("replay-run");
    if (!previewed) { return; }
    button.disabled = true;
    button.textContent = "Replaying…";
    api("/admin/analysis-jobs/replay", "POST", Object.assign({ dry_run: false }, previewed)).then(function (answer) {
      previewed = null;
      button.textContent = "Replay";
      show("replay-sample", false);
      outcome("Replayed " + answer.replayed + " of " + answer.matched + " in " + answer.pages +
        (answer.pages === 1 ? " page" : " pages") + (answer.skipped ? ", " + answer.skipped +
        " skipped (their user and context have an open job)" : "") + " · " + answer.status +
        " · run " + answer.run_id);
      return load();
    }).catch(function (error) {
      if (error instanceof AuthError) { signIn(error.message); return; }
      button.disabled = false;
      button.textContent = "Replay";
      outcome(error.message, true);
    });
  }

  $("replay-form").addEventListener("submit", function (event) {
    event.preventDefault();
    previewReplay();
  });
  $("replay-form").addEventListener("input", function () {
    // A changed filter must be previewed before it is replayed.
    previewed = null;
    $("replay-run").disabled = true;
    $("replay-run").textContent = "Replay";
  });
  $("replay-run").addEventListener("click", runReplay);

  // --- model usage (LLM flow control) -------------------------------------------------------

  function count(n) { return Number(n).toLocaleString("en-US"); }

  function counted(n, word) { return count(n) + " " + word + (n === 1 ? "" : "s"); }

  function llmLimits(limits) {
    var span = limits.window_seconds === 60 ? "a minute" : limits.window_seconds + " s";
    var parts = [];
    if (limits.tokens_per_minute != null) { parts.push(count(limits.tokens_per_minute) + " tokens"); }
    if (limits.requests_per_minute != null) { parts.push(count(limits.requests_per_minute) + " requests"); }
    var text = parts.length ? "Shared limit: " + parts.join(" and ") + " per " + span :
      "Shared limit: none (LLM_TOKENS_PER_MINUTE and LLM_REQUESTS_PER_MINUTE unset)";
    return text + "; per user and day: " + (limits.user_daily_tokens == null ? "unlimited" :
      count(limits.user_daily_tokens) + " tokens") + ".";
  }

  function llmWindow(usage) {
    var now = usage.window;
    if (!now) { return null; }
    var limits = usage.limits;
    var share = limits.tokens_per_minute ? " (" + Math.round(now.tokens / limits.tokens_per_minute * 100) +
      "% of the limit)" : "";
    return "This window: " + counted(now.tokens, "token") + share + ", " + counted(now.requests, "request") + ".";
  }

  function llmWaiting(usage) {
    var now = usage.window;
    var jobs = usage.analysis_jobs;
    var parts = [];
    if (now) {
      Object.keys(now.waiting).sort().forEach(function (family) {
        parts.push(family + " " + now.waiting[family]);
      });
    }
    var text = parts.length ? "Calls waiting for their turn: " + parts.join(", ") : "No call is waiting for its turn";
    text += "; analysis jobs waiting: " + jobs.waiting + ", deferred by the daily budget: " + jobs.deferred + ".";
    return { text: text, busy: parts.length > 0 || jobs.waiting > 0 || jobs.deferred > 0 };
  }

  function llmBackoff(usage) {
    if (!usage.window) { return null; }
    var seconds = usage.window.backoff_seconds;
    return seconds > 0 ? { text: "Provider back-off: every worker waits " + Math.ceil(seconds) + " s more.", busy: true } :
      { text: "Provider back-off: none.", busy: false };
  }

  function llmRow(day) {
    var row = element("tr");
    row.dataset.day = day.day;
    row.dataset.family = day.family;
    cell(row, "Day (UTC)", day.day);
    cell(row, "Family", day.family);
    cell(row, "Calls", count(day.calls));
    cell(row, "Tokens in", count(day.tokens_in));
    cell(row, "Tokens out", count(day.tokens_out));
    cell(row, "Cost", "$" + Number(day.cost_usd).toFixed(4));
    cell(row, "Waited", count(day.waits), day.waits ? "due" : null);
    cell(row, "Provider 429s", count(day.backoffs), day.backoffs ? "due" : null);
    cell(row, "Deferred", count(day.deferrals), day.deferrals ? "due" : null);
    return row;
  }

  function renderLlm(usage) {
    var list = $("llm-now");
    list.textContent = "";
    var waiting = llmWaiting(usage);
    var backoff = llmBackoff(usage);
    [{ text: llmLimits(usage.limits) }, { text: llmWindow(usage) }, waiting, backoff]
      .concat(usage.warnings.map(function (text) { return { text: text, busy: true }; }))
      .forEach(function (fact) {
        if (!fact || !fact.text) { return; }
        list.appendChild(element("li", fact.text, fact.busy ? "busy" : null));
      });
    fill("llm-body", usage.days, llmRow);
    show("llm-empty", usage.days.length === 0);
    show("llm-table", usage.days.length > 0);
  }

  // --- loading -----------------------------------------------------------------------------

  function load() {
    show("error", false);
    show("sign-in", false);
    document.body.dataset.state = "loading";
    return Promise.all([
      api("/admin/periodic-jobs"),
      api("/admin/retry-queue?page_size=" + PAGE_SIZE + "&page=" + pages.retry),
      api("/admin/analysis-jobs?status=failed&page_size=" + PAGE_SIZE + "&page=" + pages.dead),
      api("/admin/job-runs?status=running&page_size=" + PAGE_SIZE),
      api("/admin/job-runs?job=analysis.replay&page_size=5"),
      api("/admin/llm-usage?days=7")
    ]).then(function (answers) {
      show("content", true);
      show("forget-key", true);
      renderJobs(answers[0]);
      renderRetry(answers[1]);
      renderDead(answers[2]);
      renderRunning(answers[3]);
      renderReplays(answers[4]);
      renderLlm(answers[5]);
      $("loaded-at").textContent = "loaded " + new Date().toLocaleTimeString();
      document.body.dataset.state = "ready";
    }).catch(function (error) {
      if (error instanceof AuthError) { signIn(error.message); return; }
      fail(error.message);
      document.body.dataset.state = "error";
    });
  }

  function signIn(message) {
    show("content", false);
    show("forget-key", false);
    show("sign-in", true);
    if (message) { fail(message); } else { show("error", false); }
    $("admin-key").focus();
    document.body.dataset.state = "sign-in";
  }

  $("key-form").addEventListener("submit", function (event) {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("admin-key").value.trim());
    $("admin-key").value = "";
    load();
  });
  $("forget-key").addEventListener("click", function () {
    sessionStorage.removeItem(KEY);
    signIn();
  });
  $("refresh").addEventListener("click", load);
  document.querySelectorAll(".pager").forEach(function (pager) {
    pager.addEventListener("click", function (event) {
      var step = Number(event.target.dataset && event.target.dataset.step);
      if (!step) { return; }
      var name = pager.dataset.list;
      pages[name] = Math.max(1, pages[name] + step);
      load();
    });
  });

  if (sessionStorage.getItem(KEY)) { load(); } else { signIn(); }
})();
