//! Live pages: a hydrated page follows its server-sent event stream (`/events/...`) and merges
//! each message (the sections that changed) into what it shows. Before hydration, and where a
//! browser cannot open the stream, the page shows what the server rendered.

use leptos::prelude::*;
use serde::de::DeserializeOwned;

/// While `on` is true (and the calling component lives), follows the event stream at `url`
/// and hands every message, decoded as `T`, to `apply`. The browser reconnects by itself
/// after a network error; the server then sends the whole page again.
pub fn follow<T, U, A>(url: U, on: Signal<bool>, apply: A)
where
    T: DeserializeOwned + 'static,
    U: Fn() -> String + 'static,
    A: Fn(T) + Clone + 'static,
{
    #[cfg(feature = "hydrate")]
    {
        use send_wrapper::SendWrapper;
        use wasm_bindgen::JsCast;
        use wasm_bindgen::closure::Closure;

        Effect::new(move |_| {
            if !on.get() {
                return;
            }
            let Ok(source) = web_sys::EventSource::new(&url()) else {
                leptos::logging::warn!("cannot open the live stream; the page stays as it is");
                return;
            };
            let apply = apply.clone();
            let on_message = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(
                move |event: web_sys::MessageEvent| {
                    let Some(text) = event.data().as_string() else {
                        return;
                    };
                    match serde_json::from_str::<T>(&text) {
                        Ok(update) => apply(update),
                        Err(e) => leptos::logging::warn!("live stream: unreadable message: {e}"),
                    }
                },
            );
            source.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
            let held = SendWrapper::new((source, on_message));
            on_cleanup(move || {
                let (source, _on_message) = held.take();
                source.close();
            });
        });
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = (url, on, apply);
    }
}

/// True once the page runs in the browser (effects run only there).
pub fn hydrated() -> RwSignal<bool> {
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    hydrated
}
