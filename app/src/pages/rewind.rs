//! **Pause**, **Resume** and **Rewind** on a flow's monitor.

use leptos::prelude::*;

use crate::components::style;

use crate::api::{pause_flow, rewind_flow};
use crate::components::{Dialog, ErrorNotice, Submit, SuccessNotice};
use crate::domain::{AppError, Rewind, RewindPlan};

/// The monitor's buttons: **Pause** while the flow runs; **Resume** and
/// **Rewind…** while it is paused. `paused` is `None` until known.
#[component]
pub fn PauseControls(
    flow_id: String,
    paused: Signal<Option<bool>>,
    on_change: Callback<()>,
) -> impl IntoView {
    let notice = RwSignal::new(None::<String>);
    let rewinding = RwSignal::new(false);
    let toggle = Submit::new(
        {
            let flow_id = flow_id.clone();
            move |pause: bool| pause_flow(flow_id.clone(), pause)
        },
        move |()| on_change.run(()),
    );
    let (error, pending) = (toggle.error, toggle.pending());
    view! {
        <div class="flex flex-col items-end gap-1">
            <div class="flex gap-2 text-sm">
                {move || match paused.get() {
                    None => ().into_any(),
                    Some(false) => view! {
                        <button
                            type="button"
                            class=style::BUTTON_SMALL
                            disabled=move || pending.get()
                            on:click=move |_| { notice.set(None); toggle.run(true); }
                        >
                            "Pause"
                        </button>
                    }
                    .into_any(),
                    Some(true) => view! {
                        <button
                            type="button"
                            class=style::BUTTON_SMALL
                            on:click=move |_| rewinding.set(true)
                        >
                            "Rewind…"
                        </button>
                        <button
                            type="button"
                            class="rounded bg-blue-700 px-3 py-1 text-white disabled:opacity-50"
                            disabled=move || pending.get()
                            on:click=move |_| { notice.set(None); toggle.run(false); }
                        >
                            "Resume"
                        </button>
                    }
                    .into_any(),
                }}
            </div>
            {move || error.get().map(|e| view! { <ErrorNotice message=e.to_string() /> })}
            {move || notice.get().map(|m| view! { <SuccessNotice message=m /> })}
            {
                let flow_id = flow_id.clone();
                move || rewinding.get().then(|| view! {
                    <RewindDialog
                        flow_id=flow_id.clone()
                        on_close=Callback::new(move |_| rewinding.set(false))
                        on_done=Callback::new(move |message: String| {
                            rewinding.set(false);
                            notice.set(Some(message));
                        })
                    />
                })
            }
        </div>
    }
}

/// `YYYY-MM-DDTHH:MM[:SS]`, read as UTC, in milliseconds since the epoch.
pub fn utc_millis(text: &str) -> Option<i64> {
    let (date, time) = text.trim().split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hour, minute) = (t.next()??, t.next()??);
    let second = match t.next() {
        None => 0,
        Some(s) => s?,
    };
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || !(0..24).contains(&hour)
        || !(0..60).contains(&minute)
        || !(0..60).contains(&second)
    {
        return None;
    }
    // Days from a civil date (the proleptic Gregorian calendar).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400) + hour * 3600 + minute * 60 + second) * 1000)
}

/// `partition:offset` pairs separated by commas or spaces.
pub fn offsets(text: &str) -> Option<Vec<(i32, i64)>> {
    let pairs: Option<Vec<(i32, i64)>> = text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (p, o) = pair.split_once(':')?;
            Some((p.trim().parse().ok()?, o.trim().parse().ok()?))
        })
        .collect();
    pairs.filter(|p| !p.is_empty())
}

#[component]
fn RewindDialog(
    flow_id: String,
    on_close: Callback<()>,
    on_done: Callback<String>,
) -> impl IntoView {
    let kind = RwSignal::new("earliest".to_owned());
    let time = RwSignal::new(String::new());
    let positions = RwSignal::new(String::new());
    let plan = RwSignal::new(None::<RewindPlan>);
    let target = move || -> Result<Rewind, String> {
        match kind.get_untracked().as_str() {
            "latest" => Ok(Rewind::Latest),
            "time" => utc_millis(&time.get_untracked())
                .map(Rewind::Timestamp)
                .ok_or_else(|| "Enter a date and time, such as 2026-12-01T09:30.".to_owned()),
            "offsets" => offsets(&positions.get_untracked())
                .map(Rewind::Offsets)
                .ok_or_else(|| "Enter partition:offset pairs, such as 0:120, 1:40.".to_owned()),
            _ => Ok(Rewind::Earliest),
        }
    };
    let rewind = Submit::new(
        {
            let flow_id = flow_id.clone();
            move |(to, apply): (Rewind, bool)| rewind_flow(flow_id.clone(), to, apply)
        },
        move |p: RewindPlan| {
            if p.applied {
                on_done.run(format!(
                    "Rewound: {} message{} will be processed when the flow resumes.",
                    p.messages,
                    if p.messages == 1 { "" } else { "s" }
                ))
            } else {
                plan.set(Some(p));
            }
        },
    );
    let (error, pending) = (rewind.error, rewind.pending());
    let run = move |apply: bool| match target() {
        Ok(to) => rewind.run((to, apply)),
        Err(message) => error.set(Some(AppError::validation("rewind", message))),
    };
    // A changed choice needs a new preview.
    let changed = move || plan.set(None);
    view! {
        <Dialog title="Rewind the flow".to_owned() on_close=on_close>
            <p class="text-sm">"Sets where the flow starts when it resumes, for every partition of its topic."</p>
            <label class="mt-3 flex flex-col text-sm">
                <span class="font-medium">"Start from"</span>
                <select
                    class="mt-1 rounded border border-slate-300 px-2 py-1"
                    prop:value=move || kind.get()
                    on:change=move |ev| { kind.set(event_target_value(&ev)); changed(); }
                >
                    <option value="earliest">"The earliest message"</option>
                    <option value="latest">"After the latest message (skip what is there)"</option>
                    <option value="time">"A time"</option>
                    <option value="offsets">"Offsets per partition"</option>
                </select>
            </label>
            {move || (kind.get() == "time").then(|| view! {
                <label class="mt-2 flex flex-col text-sm">
                    <span class="font-medium">"Time (UTC)"</span>
                    <input
                        type="datetime-local"
                        step="1"
                        class="mt-1 rounded border border-slate-300 px-2 py-1"
                        prop:value=move || time.get()
                        on:input=move |ev| { time.set(event_target_value(&ev)); changed(); }
                    />
                </label>
            })}
            {move || (kind.get() == "offsets").then(|| view! {
                <label class="mt-2 flex flex-col text-sm">
                    <span class="font-medium">"Offsets (partition:offset)"</span>
                    <input
                        type="text"
                        placeholder="0:120, 1:40"
                        class="mt-1 rounded border border-slate-300 px-2 py-1 font-mono"
                        prop:value=move || positions.get()
                        on:input=move |ev| { positions.set(event_target_value(&ev)); changed(); }
                    />
                </label>
            })}
            {move || plan.get().map(|p| view! {
                <p class="mt-3 text-sm font-medium" data-testid="rewind-count">
                    {format!(
                        "{} message{} will be processed from the new position.",
                        p.messages,
                        if p.messages == 1 { "" } else { "s" }
                    )}
                </p>
                <table class="mt-1 w-full text-left text-xs" aria-label="Rewind per partition">
                    <thead class="text-slate-500">
                        <tr>
                            <th scope="col">"Partition"</th>
                            <th scope="col">"Now at"</th>
                            <th scope="col">"Starts at"</th>
                            <th scope="col">"End"</th>
                        </tr>
                    </thead>
                    <tbody>
                        {p.partitions.into_iter().map(|r| view! {
                            <tr>
                                <td>{r.partition}</td>
                                <td>{r.committed.map(|c| c.to_string()).unwrap_or_else(|| "–".into())}</td>
                                <td>{r.to}</td>
                                <td>{r.end}</td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
            })}
            {move || error.get().map(|e| view! { <div class="mt-3"><ErrorNotice message=e.to_string() /></div> })}
            <div class="mt-6 flex justify-end gap-3">
                <button
                    type="button"
                    class=style::BUTTON_SECONDARY
                    on:click=move |_| on_close.run(())
                >
                    "Cancel"
                </button>
                <button
                    type="button"
                    class="rounded border border-slate-300 px-4 py-2 text-sm disabled:opacity-60"
                    disabled=move || pending.get()
                    on:click=move |_| run(false)
                >
                    "Preview"
                </button>
                <button
                    type="button"
                    class=style::BUTTON_PRIMARY
                    disabled=move || pending.get() || plan.with(Option::is_none)
                    on:click=move |_| run(true)
                >
                    {move || if pending.get() { "Working…" } else { "Rewind" }}
                </button>
            </div>
        </Dialog>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_as_utc() {
        assert_eq!(utc_millis("1970-01-01T00:00"), Some(0));
        assert_eq!(utc_millis("2000-02-29T00:00:00"), Some(951_782_400_000));
        assert_eq!(utc_millis("2026-11-23T19:41:03"), Some(1_795_462_863_000));
        for bad in [
            "",
            "2026-13-01T00:00",
            "2026-11-23",
            "2026-11-23T25:00",
            "x-y-zT1:2",
        ] {
            assert_eq!(utc_millis(bad), None, "{bad}");
        }
    }

    #[test]
    fn offsets_are_pairs() {
        assert_eq!(offsets("0:120, 1:40"), Some(vec![(0, 120), (1, 40)]));
        assert_eq!(offsets("2:7"), Some(vec![(2, 7)]));
        assert_eq!(offsets(""), None);
        assert_eq!(offsets("0-1"), None);
    }
}
