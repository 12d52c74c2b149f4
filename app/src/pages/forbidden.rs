use leptos::prelude::*;
use leptos_router::components::A;

/// Shown to a member who opens an admin page.
#[component]
pub fn ForbiddenPage() -> impl IntoView {
    view! {
        <section aria-labelledby="forbidden-title" class="rounded-lg border border-amber-300 bg-amber-50 p-6">
            <h1 id="forbidden-title" class="text-xl font-semibold">"Not allowed"</h1>
            <p class="mt-2">
                "You are not allowed to view this page. Only cluster administrators can open it."
            </p>
            <A href="/catalog" attr:class="mt-4 inline-block text-blue-700 underline">
                "Go to the ML service catalog"
            </A>
        </section>
    }
}
