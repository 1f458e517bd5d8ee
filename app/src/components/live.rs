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

/// Merges a stream's update into the page it last showed: `latest` if the stream already
/// brought something, else what `loaded` holds (the server-rendered page).
pub fn merge<T, E>(
    latest: RwSignal<Option<T>>,
    loaded: Resource<Result<T, E>>,
    apply: impl FnOnce(&mut T),
) where
    T: Clone + Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
    Result<T, E>: serde::Serialize + DeserializeOwned,
{
    latest.update(|l| {
        let base = l
            .take()
            .or_else(|| loaded.get_untracked().and_then(Result::ok));
        *l = base.map(|mut page| {
            apply(&mut page);
            page
        });
    });
}

/// Calls `forget` when `key` (the page's route parameter) changes: what a stream brought
/// belongs to the page it was about.
pub fn forget_on_change(key: impl Fn() -> String + 'static, forget: impl Fn() + 'static) {
    Effect::new(move |before: Option<String>| {
        let now = key();
        if before.is_some_and(|b| b != now) {
            forget();
        }
        now
    });
}

/// True once the page runs in the browser (effects run only there).
pub fn hydrated() -> RwSignal<bool> {
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    hydrated
}
