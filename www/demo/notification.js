// The demo back office's `notification` service, with the contract of Odoo's
// (@web/core/notifications/notification_service): add(message, { title,
// type, sticky, buttons: [{ name, primary, onClick }] }) shows a non-modal
// toast in a corner and returns a function that closes it.
export const notificationService = {
  dependencies: [],
  start() {
    let box;
    return {
      add(message, { title, type = "info", buttons = [] } = {}) {
        if (!box) {
          box = document.createElement("div");
          box.className = "o_notification_manager";
          document.body.append(box);
        }
        const toast = document.createElement("div");
        toast.className = `o_notification o_notification_${type}`;
        toast.setAttribute("role", "status");
        if (title) toast.append(Object.assign(document.createElement("strong"), { textContent: title }));
        toast.append(Object.assign(document.createElement("p"), { className: "o_notification_content", textContent: message }));
        for (const b of buttons) {
          const button = Object.assign(document.createElement("button"), { type: "button", textContent: b.name });
          if (b.primary) button.className = "btn-primary";
          button.addEventListener("click", () => b.onClick?.());
          toast.append(button);
        }
        box.append(toast);
        return () => toast.remove();
      },
    };
  },
};
