//! The opt-in notice before a logout, shown through the web client's own
//! notification service (Odoo's `notification`: `add(message, options)`
//! returns a function that closes it). Non-modal, with a "Stay signed in"
//! button that counts as activity; never a dialog. Without a notification
//! service nothing is shown (the timeout is enforced all the same).

use std::rc::Rc;

use js_sys::{Array, Function, Object, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use super::{text_of, with, Client};

/// A notice, on screen until `hide`; dropping it hides it too. The button's
/// callback lives as long as this value, which outlives `hide` (the button's
/// own click hides the notice, and a callback must not be freed while it
/// runs): the next notice or `stop` drops it.
pub(super) struct Notice {
    close: Option<Function>,
    _stay: Closure<dyn FnMut()>,
}

impl Notice {
    pub(super) fn hide(&mut self) {
        if let Some(close) = self.close.take() {
            let _ = close.call0(&JsValue::UNDEFINED);
        }
    }

    pub(super) fn is_open(&self) -> bool {
        self.close.is_some()
    }
}

impl Drop for Notice {
    fn drop(&mut self) {
        self.hide();
    }
}

impl Notice {
    /// Shows the notice for a session that ends in `remaining_ms` unless
    /// the user does something; `None` without a notification service.
    pub(super) fn show(client: &Rc<Client>, remaining_ms: u64) -> Option<Notice> {
        let service = &client.notifications;
        let add = Reflect::get(service, &"add".into())
            .ok()?
            .dyn_into::<Function>()
            .ok()?;
        let me = Rc::downgrade(client);
        let stay = Closure::<dyn FnMut()>::new(move || {
            // The button is real input: the notice comes down, the report goes out.
            with(&me, |c| {
                let now = js_sys::Date::now();
                c.state.borrow_mut().stamp = now;
                c.run(|_, _| {});
            })
        });
        let mut message = String::from("You will be signed out in ");
        message.push_str(&text_of(remaining_ms.div_ceil(1000) as f64));
        message.push_str(" seconds unless you continue working.");
        let button = Object::new();
        let set = |o: &Object, k: &str, v: &JsValue| {
            let _ = Reflect::set(o, &k.into(), v);
        };
        set(&button, "name", &"Stay signed in".into());
        set(&button, "primary", &true.into());
        set(&button, "onClick", stay.as_ref());
        let options = Object::new();
        set(&options, "title", &"Session timeout".into());
        set(&options, "type", &"warning".into());
        set(&options, "sticky", &true.into());
        set(&options, "buttons", &Array::of1(&button).into());
        let close = add
            .call2(service, &message.into(), &options)
            .ok()
            .and_then(|f| f.dyn_into::<Function>().ok());
        Some(Notice { close, _stay: stay })
    }
}
