//! The frame around every page: skip link, header with navigation, main landmark, footer.

use leptos::prelude::*;
use leptos_router::components::A;

use crate::VERSION;

#[component]
pub fn Layout(children: Children) -> impl IntoView {
    view! {
        <a class="skip-link" href="#main">"Skip to content"</a>
        <header class="site-header">
            <div class="container header-row">
                <a class="brand" href="/">
                    <span class="brand-mark" aria-hidden="true">"⬢"</span>
                    " copr-pools"
                </a>
                <nav aria-label="Main">
                    <ul class="nav-list">
                        <li><A href="/" exact=true>"Status"</A></li>
                    </ul>
                </nav>
            </div>
        </header>
        <main id="main" class="container" tabindex="-1">
            {children()}
        </main>
        <footer class="site-footer">
            <div class="container footer-row">
                <span>{format!("copr-pools {VERSION}")}</span>
                <span>"Self-service builder pools for Fedora Copr"</span>
            </div>
        </footer>
    }
}
