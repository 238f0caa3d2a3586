// The demo back office's boot: register the session-timeout service in the
// registry and start the services, as the Odoo web client does at boot.
// window.__sessionTimeout is the client's debug and test handle:
// { stop(), state() }, state() -> { phase, listeners, deadline, notice }.
import { registry, startServices } from "./registry.js";
import { register } from "../session_timeout_service.js";
import { notificationService } from "./notification.js";

registry.category("services").add("notification", notificationService);
register(registry);
const env = {};
window.__sessionTimeoutReady = startServices(env).then((services) => {
  window.__sessionTimeout = services.session_timeout;
  return services.session_timeout;
});
