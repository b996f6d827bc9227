/* The user's dashboard: reads the JSON API with the stored bearer token and draws the charts. */
(function () {
  "use strict";
  var TOKEN_KEY = "focus.token";
  var DAYS = 28;
  var $ = function (id) { return document.getElementById(id); };
  var charts = {};

  function show(id, visible) { $(id).hidden = !visible; }

  function fail(message) {
    $("error").textContent = message;
    show("error", true);
  }

  function api(path) {
    return fetch("/api/v1" + path, {
      headers: { Authorization: "Bearer " + localStorage.getItem(TOKEN_KEY) }
    }).then(function (response) {
      if (response.status === 401) {
        localStorage.removeItem(TOKEN_KEY);
        throw new Error("That token was not accepted; paste a valid one.");
      }
      if (response.status === 404) { return null; }
      if (!response.ok) { throw new Error("The server answered " + response.status + " for " + path); }
      return response.json();
    });
  }

  function barChart(id, labels, values, label, color) {
    if (charts[id]) { charts[id].destroy(); }
    charts[id] = new Chart($(id), {
      type: "bar",
      data: { labels: labels, datasets: [{ label: label, data: values, backgroundColor: color }] },
      options: {
        animation: false,
        maintainAspectRatio: false,
        plugins: { legend: { display: false } },
        scales: { y: { beginAtZero: true, ticks: { precision: 0 } } }
      }
    });
  }

  function hourLabel(hour) { return String(hour).padStart(2, "0") + ":00"; }

  function renderDays(days) {
    barChart("chart-days", days.map(function (d) { return d.date.slice(5); }),
             days.map(function (d) { return d.minutes; }), "Focus minutes", "#3b6fd8");
  }

  function renderProfile(view) {
    var profile = view && view.profile;
    var byHour = (profile && profile.focus_by_hour) || {};
    var hours = [];
    for (var h = 0; h < 24; h++) { hours.push(byHour[String(h)] || 0); }
    barChart("chart-hours", hours.map(function (_, i) { return hourLabel(i); }), hours, "Sessions", "#1f8a4c");
    $("profile-status").textContent = view ? (view.message || "") : "";
    if (!profile) { return; }
    $("peak-hours").textContent = (profile.peak_focus_hours || []).map(hourLabel).join(", ") || "–";
    $("peak-days").textContent = (profile.peak_focus_days || []).join(", ") || "–";
    var ratio = profile.avg_completion_ratio;
    $("completion").textContent = ratio == null ? "–" :
      Math.round(ratio * 100) + "% of " + profile.total_sessions_count + " sessions";
    var pct = profile.avg_underestimation_pct;
    $("estimation").textContent = pct == null ? "–" :
      Math.abs(pct) < 5 ? "Your estimates are on target" :
      pct < 0 ? "Sessions run " + Math.round(-pct) + "% longer than planned" :
                "Sessions run " + Math.round(pct) + "% shorter than planned";
  }

  function renderBrief(brief) {
    if (!brief) { return; }
    $("brief-week").textContent = "Week of " + brief.week_of;
    $("brief-story").textContent = brief.main_story;
    var list = $("brief-insights");
    list.textContent = "";
    (brief.insights || []).forEach(function (insight) {
      var item = document.createElement("li");
      item.dataset.type = insight.type;
      item.textContent = insight.message;
      list.appendChild(item);
    });
  }

  function renderAnalysis(job) {
    if (!job) { return; }
    var when = job.completed_at || job.started_at || job.created_at;
    $("analysis-state").textContent = job.context_type + ": " + job.status +
      (job.outcome ? " (" + job.outcome.replace("_", " ") + ")" : "") +
      (job.error && job.status === "failed" ? " – " + job.error : "") +
      " · " + new Date(when).toLocaleString();
  }

  function load() {
    show("error", false);
    show("sign-in", false);
    Promise.all([
      api("/me/dashboard?days=" + DAYS),
      api("/focus-sessions/profile")
    ]).then(function (answers) {
      var dashboard = answers[0], profile = answers[1], brief = dashboard.latest_brief;
      var minutes = dashboard.days.reduce(function (sum, d) { return sum + d.minutes; }, 0);
      var recorded = profile ? profile.sessions_recorded : 0;
      show("empty-state", recorded === 0 && minutes === 0 && !brief);
      show("content", true);
      show("sign-out", true);
      renderDays(dashboard.days);
      renderProfile(profile);
      renderBrief(brief);
      renderAnalysis(dashboard.last_analysis);
      document.body.dataset.state = "ready";
    }).catch(function (error) {
      fail(error.message);
      if (!localStorage.getItem(TOKEN_KEY)) { signIn(); }
    });
  }

  function signIn() {
    show("content", false);
    show("sign-out", false);
    show("sign-in", true);
    document.body.dataset.state = "sign-in";
  }

  $("token-form").addEventListener("submit", function (event) {
    event.preventDefault();
    localStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    load();
  });
  $("sign-out").addEventListener("click", function () {
    localStorage.removeItem(TOKEN_KEY);
    signIn();
  });

  if (localStorage.getItem(TOKEN_KEY)) { load(); } else { signIn(); }
})();
