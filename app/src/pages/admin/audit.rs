use leptos::prelude::*;

use crate::api::list_audit_events;
use crate::components::{
    EmptyState, FieldError, Loaded, Pager, Table, current_page, first_page, invalid,
};
use crate::domain::{AUDIT_KINDS, AppError, AuditPage, AuditQuery};
use crate::pages::rewind::utc_millis;

/// Admin → System actions → **Audit log**: who did what and when, newest
/// first, filtered by user, kind and time.
#[component]
pub fn AuditLogPage() -> impl IntoView {
    let actor = RwSignal::new(String::new());
    let kind = RwSignal::new(String::new());
    let from = RwSignal::new(String::new());
    let to = RwSignal::new(String::new());
    let error = RwSignal::new(None::<AppError>);
    // The filter applied, and the pages read so far (the first at index 0).
    let applied = RwSignal::new(AuditQuery::default());
    let pages = first_page();
    let page = LocalResource::new(move || {
        let mut query = applied.get();
        query.before = current_page(pages);
        list_audit_events(query)
    });
    // The server's refusal of a filter field is shown at that field.
    Effect::new(move |_| {
        if let Some(Err(e)) = page.get()
            && e.field().is_some()
        {
            error.set(Some(e));
        }
    });
    let apply = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        error.set(None);
        let time = |text: String, field: &'static str| -> Result<Option<i64>, AppError> {
            let text = text.trim().to_owned();
            if text.is_empty() {
                return Ok(None);
            }
            utc_millis(&text).map(Some).ok_or_else(|| {
                AppError::validation(field, "Write a time as YYYY-MM-DDTHH:MM (UTC).")
            })
        };
        let (from_ms, to_ms) = match (
            time(from.get_untracked(), "from"),
            time(to.get_untracked(), "to"),
        ) {
            (Ok(f), Ok(t)) => (f, t),
            (Err(e), _) | (_, Err(e)) => {
                error.set(Some(e));
                return;
            }
        };
        let text = |s: String| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        applied.set(AuditQuery {
            actor: text(actor.get_untracked()),
            kind: text(kind.get_untracked()),
            from_ms,
            to_ms,
            before: None,
        });
        pages.set(vec![None]);
    };

    view! {
        <h1 class="text-2xl font-semibold">"Audit log"</h1>
        <p class="mt-1 max-w-3xl text-slate-600">
            "Who did what and when: logins, broker connections, topics, grants, flows, API keys, model hosts, and changes made with the eventflows command line. Times are UTC."
        </p>
        <form
            aria-label="Filter the audit log"
            class="mt-4 flex flex-wrap items-end gap-3 rounded-lg bg-white p-4 shadow"
            novalidate
            on:submit=apply
        >
            <div>
                <label for="audit-actor" class="block text-sm font-medium">"User"</label>
                <input id="audit-actor" placeholder="Anyone" class="mt-1 w-40 rounded border border-slate-300 px-2 py-1" bind:value=actor />
            </div>
            <div>
                <label for="audit-kind" class="block text-sm font-medium">"Kind"</label>
                <select id="audit-kind" class="mt-1 rounded border border-slate-300 px-2 py-1" bind:value=kind>
                    <option value="">"Any"</option>
                    {AUDIT_KINDS.iter().map(|k| view! { <option value=*k>{*k}</option> }).collect_view()}
                </select>
            </div>
            <div>
                <label for="audit-from" class="block text-sm font-medium">"From (UTC)"</label>
                <input id="audit-from" aria-describedby="audit-from-error" aria-invalid=invalid(error, "from") placeholder="2026-12-01T00:00" class="mt-1 w-44 rounded border border-slate-300 px-2 py-1 font-mono text-sm" bind:value=from />
                <FieldError error=error field="from" input="audit-from" />
            </div>
            <div>
                <label for="audit-to" class="block text-sm font-medium">"To (UTC)"</label>
                <input id="audit-to" aria-describedby="audit-to-error" aria-invalid=invalid(error, "to") placeholder="2026-12-02T00:00" class="mt-1 w-44 rounded border border-slate-300 px-2 py-1 font-mono text-sm" bind:value=to />
                <FieldError error=error field="to" input="audit-to" />
            </div>
            <button type="submit" class="rounded bg-blue-700 px-4 py-1.5 text-sm font-medium text-white hover:bg-blue-800">
                "Show"
            </button>
        </form>
        <section class="mt-4" aria-label="Audit events">
            <Loaded value=page what="the audit log" field_errors_in_form=true view=move |AuditPage { events, older }| {
                if events.is_empty() {
                    return view! { <EmptyState title="No events match." /> }.into_any();
                }
                view! {
                    <Table columns=&["When", "User", "Kind", "What", "Detail"]>
                        {events.into_iter().map(|e| view! {
                            <tr class="border-t border-slate-100 align-top">
                                <td class="whitespace-nowrap px-3 py-2 font-mono text-xs">{e.at}</td>
                                <td class="px-3 py-2">{e.actor}</td>
                                <td class="px-3 py-2 font-mono text-xs">{e.kind}</td>
                                <td class="px-3 py-2">{e.target}</td>
                                <td class="px-3 py-2 text-slate-700">{e.detail}</td>
                            </tr>
                        }).collect_view()}
                    </Table>
                    <Pager pages=pages older=older />
                }
                .into_any()
            } />
        </section>
    }
}
