// The login form: POST /api/session, then the page the user came for (same site only).
document.getElementById("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const result = document.getElementById("login-result");
  result.textContent = "";
  const r = await fetch("/api/session", {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({username: document.getElementById("username").value,
                          password: document.getElementById("password").value}),
  });
  if (r.ok) {
    const next = new URLSearchParams(location.search).get("next") || "/";
    location.assign(next.startsWith("/") && !next.startsWith("//") ? next : "/");
    return;
  }
  let detail = `login failed (${r.status})`;
  try { detail = (await r.json()).detail; } catch (e) { /* not JSON */ }
  result.textContent = typeof detail === "string" ? detail : "login failed";
});
