//! The reference demo data set: a plausible IPTV channel manager configuration, with logo
//! files in `logos/` and a few small recording files in `recordings/`.
//!
//! Deterministic (no randomness), so two seeds with the same size produce the same data.

use std::path::Path;

use sqlx::SqlitePool;

use crate::{Error, Result};

const GROUPS: &[&str] = &[
    "News",
    "Sports",
    "Movies",
    "Kids",
    "Music",
    "Documentary",
    "Local",
];
const NAMES: &[&str] = &[
    "Action", "Arena", "Atlas", "Beacon", "Central", "Cinema", "Coast", "Comet", "Delta", "Echo",
    "Field", "Globe", "Harbor", "Horizon", "Metro", "Nova", "Orbit", "Pulse", "Summit", "Valley",
];

/// What one seed created.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct SeedStats {
    pub channels: usize,
    pub streams: usize,
    pub logos: usize,
    pub recordings: usize,
}

/// Fills an empty content DB with `channels` demo channels and their streams, logos,
/// playlists, EPG sources, plugins and recordings; writes logo and recording files.
/// Refuses to touch a database that already holds content.
pub async fn seed(pool: &SqlitePool, data_dir: &Path, channels: usize) -> Result<SeedStats> {
    if !crate::content::is_empty(pool).await? {
        return Err(Error::conflict(
            "the content database already holds data; demo data is only seeded into an empty database",
        ));
    }
    let channels = channels.max(1);
    let logos_dir = data_dir.join("logos");
    let rec_dir = data_dir.join("recordings");
    for d in [&logos_dir, &rec_dir] {
        tokio::fs::create_dir_all(d)
            .await
            .map_err(|e| Error::internal(format!("cannot create {}", d.display()), e))?;
    }
    let now = crate::state::now_rfc3339();
    let mut tx = pool.begin().await?;

    let settings: &[(&str, &str, &str)] = &[
        (
            "stream-settings",
            "Stream settings",
            r#"{"default_user_agent":"VLC/3.0.20","default_profile":"proxy","buffer_seconds":4}"#,
        ),
        (
            "epg-settings",
            "EPG settings",
            r#"{"match_mode":"tvg-id","days_ahead":7}"#,
        ),
        ("preferred-region", "Preferred region", r#""us""#),
        (
            "auto-import-mapped-files",
            "Auto import mapped files",
            "true",
        ),
    ];
    for (key, name, value) in settings {
        sqlx::query("INSERT INTO core_settings (key, name, value) VALUES (?, ?, ?)")
            .bind(key)
            .bind(name)
            .bind(value)
            .execute(&mut *tx)
            .await?;
    }
    for (i, (user, level)) in [("admin", 10), ("livingroom", 1), ("kids-tablet", 0)]
        .iter()
        .enumerate()
    {
        sqlx::query("INSERT INTO users (id, username, user_level, api_key, created_at) VALUES (?, ?, ?, ?, ?)")
            .bind(i as i64 + 1)
            .bind(user)
            .bind(level)
            .bind(format!("demo-key-{:08x}", (i as u32 + 1).wrapping_mul(2_654_435_761)))
            .bind(&now)
            .execute(&mut *tx)
            .await?;
    }
    for (i, g) in GROUPS.iter().enumerate() {
        sqlx::query("INSERT INTO channel_groups (id, name) VALUES (?, ?)")
            .bind(i as i64 + 1)
            .bind(g)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("INSERT INTO epg_sources (id, name, source_type, url, refresh_interval_hours) VALUES (1, 'XMLTV Guide', 'xmltv', 'https://epg.example.net/guide.xml.gz', 12), (2, 'Schedules Direct', 'schedules_direct', NULL, 24)")
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO m3u_accounts (id, name, account_type, server_url, username, password, max_streams, refresh_interval_hours, updated_at) VALUES \
        (1, 'Home IPTV', 'standard', 'https://iptv.example.net/playlist.m3u', NULL, NULL, 2, 24, ?), \
        (2, 'Xtream Provider', 'xtream', 'http://xtream.example.net:8080', 'demo', 'demo-password', 4, 6, ?)")
        .bind(&now)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO plugins (key, name, enabled, settings) VALUES \
        ('epg-matcher', 'EPG matcher', 1, '{\"threshold\":0.8}'), ('stream-checker', 'Stream checker', 0, '{}')")
        .execute(&mut *tx)
        .await?;

    let logos = channels.div_ceil(2).min(5000);
    for i in 0..logos {
        let name = format!("{} {}", NAMES[i % NAMES.len()], i / NAMES.len() + 1);
        let file = format!("logo-{:05}.svg", i + 1);
        let hue = (i * 47) % 360;
        let svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"128\" height=\"72\" viewBox=\"0 0 128 72\">\
             <rect width=\"128\" height=\"72\" rx=\"8\" fill=\"hsl({hue},60%,40%)\"/>\
             <text x=\"64\" y=\"44\" font-size=\"18\" text-anchor=\"middle\" fill=\"#fff\" font-family=\"sans-serif\">{name}</text></svg>\n"
        );
        tokio::fs::write(logos_dir.join(&file), svg)
            .await
            .map_err(|e| Error::internal(format!("cannot write demo logo {file}"), e))?;
        sqlx::query("INSERT INTO logos (id, name, url, file_path) VALUES (?, ?, NULL, ?)")
            .bind(i as i64 + 1)
            .bind(&name)
            .bind(&file)
            .execute(&mut *tx)
            .await?;
    }

    let mut streams = 0usize;
    for c in 0..channels {
        let id = c as i64 + 1;
        let name = format!("{} {}", NAMES[c % NAMES.len()], GROUPS[c % GROUPS.len()]);
        let logo = if logos > 0 {
            Some((c % logos) as i64 + 1)
        } else {
            None
        };
        sqlx::query("INSERT INTO channels (id, channel_number, name, channel_group_id, logo_id, tvg_id, epg_source_id, user_level) VALUES (?, ?, ?, ?, ?, ?, ?, 0)")
            .bind(id)
            .bind(id as f64)
            .bind(&name)
            .bind((c % GROUPS.len()) as i64 + 1)
            .bind(logo)
            .bind(format!("ch{id}.demo"))
            .bind(if c % 3 == 0 { 2 } else { 1 })
            .execute(&mut *tx)
            .await?;
        for s in 0..2 {
            streams += 1;
            let sid = streams as i64;
            sqlx::query("INSERT INTO streams (id, name, url, m3u_account_id, group_title, tvg_id, stream_hash) VALUES (?, ?, ?, ?, ?, ?, ?)")
                .bind(sid)
                .bind(format!("{name} {}", if s == 0 { "HD" } else { "SD" }))
                .bind(format!("https://iptv.example.net/live/{id}/{s}.ts"))
                .bind((s % 2) as i64 + 1)
                .bind(GROUPS[c % GROUPS.len()])
                .bind(format!("ch{id}.demo"))
                .bind(format!("{:016x}", (sid as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)))
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO channel_streams (channel_id, stream_id, sort_order) VALUES (?, ?, ?)",
            )
            .bind(id)
            .bind(sid)
            .bind(s as i64)
            .execute(&mut *tx)
            .await?;
        }
    }

    sqlx::query("INSERT INTO recording_rules (id, channel_id, title_pattern, days_of_week, start_time, end_time) VALUES (1, 1, 'Evening News', '1,2,3,4,5', '18:00', '18:30')")
        .execute(&mut *tx)
        .await?;
    let recordings = 3usize.min(channels);
    for r in 0..recordings {
        let file = format!("recording-{:03}.ts", r + 1);
        // A few KiB of deterministic, poorly compressible bytes, like real media.
        let mut x: u64 = 0x2545_F491_4F6C_DD1D ^ (r as u64 + 1);
        let bytes: Vec<u8> = (0..16 * 1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        tokio::fs::write(rec_dir.join(&file), bytes)
            .await
            .map_err(|e| Error::internal(format!("cannot write demo recording {file}"), e))?;
        sqlx::query("INSERT INTO recordings (id, channel_id, rule_id, title, start_time, end_time, file_path, status) VALUES (?, 1, 1, ?, ?, ?, ?, 'completed')")
            .bind(r as i64 + 1)
            .bind(format!("Evening News #{}", r + 1))
            .bind(format!("2026-11-{:02}T18:00:00.000Z", 20 + r))
            .bind(format!("2026-11-{:02}T18:30:00.000Z", 20 + r))
            .bind(&file)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(SeedStats {
        channels,
        streams,
        logos,
        recordings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_demo_data_summary_masks_every_secret_and_counts_only_has_no_rows() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::content::open_sqlite(
            &crate::content::sqlite_url(&dir.path().join("app.db")),
            "content database",
        )
        .await
        .unwrap();
        crate::content::migrate(&pool).await.unwrap();
        seed(&pool, dir.path(), 4).await.unwrap();

        let full = crate::content::summarize(&pool, Some(5)).await.unwrap();
        let text = serde_json::to_string(&full).unwrap();
        assert!(!text.contains("demo-password"), "{text}");
        assert!(!text.contains("demo-key-"), "{text}");
        let table = |n: &str| full.iter().find(|t| t.name == n).unwrap();
        let m3u = table("m3u_accounts");
        let pw = m3u.columns.iter().position(|c| c == "password").unwrap();
        assert_eq!(m3u.sample[0][pw], "NULL");
        assert_eq!(m3u.sample[1][pw], crate::content::MASK);
        let users = table("users");
        let key = users.columns.iter().position(|c| c == "api_key").unwrap();
        assert!(users.sample.iter().all(|r| r[key] == crate::content::MASK));
        // Settings keys (a primary key named `key`) stay readable.
        let settings = table("core_settings");
        assert!(settings.sample.iter().any(|r| r[0] == "epg-settings"));

        let counts = crate::content::summarize(&pool, None).await.unwrap();
        assert_eq!(counts.len(), full.len());
        for (c, f) in counts.iter().zip(&full) {
            assert_eq!((&c.name, c.rows), (&f.name, f.rows));
            assert!(c.columns.is_empty() && c.sample.is_empty(), "{}", c.name);
        }
    }
}
