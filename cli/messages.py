"""Words the CLI shows people: Vietnamese by default, English with LGSP_LANG=en or --lang en."""

from __future__ import annotations

import os

MESSAGES: dict[str, tuple[str, str]] = {
    "error": ("lỗi", "error"),
    "format_set": ("đơn vị {unit} nhận gói tin {family} ở định dạng {format}",
                   "unit {unit} takes {family} packets as {format}"),
    "format_reset": ("đơn vị {unit} nhận gói tin {family} ở định dạng mặc định ({format})",
                     "unit {unit} takes {family} packets in the default format ({format})"),
    "format_none": ("chưa đơn vị nào đặt định dạng riêng", "no unit has a format of its own"),
    "h_family": ("HỌ DỮ LIỆU", "FAMILY"),
    "h_format": ("ĐỊNH DẠNG", "FORMAT"),
    "listening": ("lgsp đang phục vụ tại {url} (Ctrl+C để dừng)", "lgsp is listening on {url} (Ctrl+C to stop)"),
    "stopping": ("đang dừng…", "stopping…"),
    "backup_done": ("đã sao lưu vào {dir}: cơ sở dữ liệu {db}, {n} tệp blob ({mib} MiB)",
                    "backed up into {dir}: {db} database, {n} blob files ({mib} MiB)"),
    "backup_missing": ("{n} tệp blob của gói tin đã giao và xóa trong lúc sao lưu không có trong bản sao lưu "
                       "(xem backup.json, mục missing)",
                       "{n} blob files of packets delivered and purged during the backup are not in it "
                       "(see backup.json, missing)"),
    "backup_key": ("khóa chủ KHÔNG nằm trong bản sao lưu: hãy cất riêng {path}",
                   "the master key is NOT in the backup: keep {path} separately"),
    "restore_done": ("đã khôi phục bản sao lưu {dir} (lúc {at}) vào {db}, {n} tệp blob",
                     "restored backup {dir} (taken {at}) into {db}, {n} blob files"),
    "notice_added": ("đã thêm thông báo {id} ({start} → {end}); hub đang chạy sẽ gửi tới mọi đơn vị",
                     "added notice {id} ({start} → {end}); the running hub announces it to every unit"),
    "notice_none": ("không có thông báo nào", "no notices"),
    "notice_withdrawn": ("đã rút thông báo {id}", "withdrew notice {id}"),
    "notice_withdrawn_mark": ("đã rút", "withdrawn"),
    "h_to": ("ĐẾN", "TO"),
    "h_announced": ("ĐÃ GỬI", "ANNOUNCED"),
    "h_message": ("NỘI DUNG", "MESSAGE"),
    "doctor_no_key": ("không có khóa chủ {path}: chép khóa chủ của các nút khác vào đây trước "
                      "(mở kho sẽ tạo một khóa mới, khác)",
                      "no master key at {path}: copy the other nodes' master key here first "
                      "(opening the store would create a new, different one)"),
    "doctor_failed": ("{n} mục chưa đạt: sửa rồi chạy lại lgsp doctor", "{n} checks failed: fix them and run "
                      "lgsp doctor again"),
    "doctor_ok": ("nút này dùng chung cơ sở dữ liệu, thư mục blob, khóa chủ và khóa ký với cụm; so dấu vân tay "
                  "khóa chủ giữa các nút", "this node shares the store, blob folder, master key and signing key "
                  "with the cluster; compare the master key fingerprint across nodes"),
    "no_config": ("không thấy tệp cấu hình {path}: lệnh quản trị phải biết dùng kho dữ liệu nào; hãy chạy trong "
                  "thư mục của trục, hoặc chỉ rõ --config TỆP (hay LGSP_CONFIG)",
                  "no config file {path}: an administration command must know which store to use; run it in the "
                  "hub's folder, or give --config FILE (or LGSP_CONFIG)"),
    "store_used": ("kho dữ liệu: {store} (cấu hình: {config})", "store: {store} (config: {config})"),
    "config_from_environment": ("biến môi trường LGSP_*", "LGSP_* environment"),
    "config_ok": ("{path}: cấu hình hợp lệ", "{path}: configuration is valid"),
    "db_upgraded": ("cơ sở dữ liệu đã ở phiên bản {rev}", "database is at revision {rev}"),
    "unit_added": ("đã thêm đơn vị {id} — {name}", "added unit {id} — {name}"),
    "unit_status": ("đơn vị {id}: {status}", "unit {id}: {status}"),
    "app_added": ("đã thêm ứng dụng {name} (mã {id}) cho đơn vị {unit}",
                  "added application {name} (id {id}) to unit {unit}"),
    "key_issued": ("đã cấp khóa truy cập {key} ({alg}) cho đơn vị {unit}",
                   "issued access key {key} ({alg}) to unit {unit}"),
    "secret_once": ("khóa bí mật (chỉ hiển thị MỘT lần, hãy lưu lại an toàn):",
                    "secret key (shown ONCE, store it safely):"),
    "private_once": ("khóa riêng RSA (chỉ hiển thị MỘT lần, hãy lưu lại an toàn):",
                     "RSA private key (shown ONCE, store it safely):"),
    "profile_saved": ("đã lưu hồ sơ {name} vào {path}", "saved profile {name} to {path}"),
    "key_revoked": ("đã thu hồi khóa {key}", "revoked key {key}"),
    "sent": ("đã gửi gói tin {id}", "sent packet {id}"),
    "fetched": ("đã tải gói tin {id} vào {path} (SHA-256 {sha})", "fetched packet {id} into {path} (SHA-256 {sha})"),
    "acked": ("đã xác nhận gói tin {id}: {state}", "acknowledged packet {id}: {state}"),
    "failed": ("đã từ chối gói tin {id}: {state}", "refused packet {id}: {state}"),
    "cancelled": ("đã hủy gửi tới: {units}", "cancelled deliveries to: {units}"),
    "inbox_empty": ("hộp thư đến trống", "inbox is empty"),
    "inbox_more": ("còn gói tin sau {n} gói này; xem tiếp: lgsp inbox --cursor {cursor}",
                   "more packets after these {n}; continue with: lgsp inbox --cursor {cursor}"),
    "no_file_for_ack": ("không thấy tệp {path}: hãy tải gói tin trước (lgsp fetch) hoặc chỉ rõ --file/--sha256",
                        "no file {path}: fetch the packet first (lgsp fetch) or pass --file/--sha256"),
    "secret_prompt": ("giá trị bí mật {name}: ", "value of secret {name}: "),
    "secret_saved": ("đã lưu bí mật {name} (đã mã hóa)", "stored secret {name} (encrypted)"),
    "secret_deleted": ("đã xóa bí mật {name}", "deleted secret {name}"),
    "h_updated": ("CẬP NHẬT", "UPDATED"),
    "h_packet": ("GÓI TIN", "PACKET"), "h_mode": ("CÁCH NHẬN", "MODE"), "h_state": ("TRẠNG THÁI", "STATE"),
    "h_attempts": ("LẦN GỬI", "ATTEMPTS"), "h_next": ("GỬI LẠI LÚC", "NEXT TRY"), "h_why": ("LÝ DO", "REASON"),
    "h_url": ("ĐỊA CHỈ", "URL"), "h_grants": ("ĐƯỢC GỌI BỞI", "GRANTED TO"),
    "h_timeout": ("HẠN CHỜ (s)", "TIMEOUT (s)"),
    "no_deliveries": ("không có lượt chuyển nào khớp", "no matching deliveries"),
    "delivery_retried": ("đã xếp lại gói tin {id} để chuyển tới {unit}", "queued packet {id} again for {unit}"),
    "delivery_cancelled": ("đã hủy chuyển gói tin {id} tới: {units}", "cancelled packet {id} for: {units}"),
    "delivery_rerouted": ("đã chuyển hướng gói tin {id}: {unit} → {to} ({mode})",
                          "re-routed packet {id}: {unit} → {to} ({mode})"),
    "hub_running_note": ("trục đang chạy sẽ nhận thay đổi trong vòng {s} giây",
                         "a running hub picks this up within {s} seconds"),
    "service_added": ("đã đăng ký dịch vụ {id} của đơn vị {unit} tại {url}",
                      "registered service {id} of unit {unit} at {url}"),
    "service_granted": ("đơn vị {unit} được gọi dịch vụ {id}", "unit {unit} may call service {id}"),
    "service_already": ("đơn vị {unit} đã được gọi dịch vụ {id}", "unit {unit} could already call service {id}"),
    "service_revoked": ("đã thu quyền gọi dịch vụ {id} của đơn vị {unit}", "unit {unit} may no longer call {id}"),
    "service_removed": ("đã xóa dịch vụ {id}", "removed service {id}"),
    "service_status": ("dịch vụ {id}: {status}", "service {id}: {status}"),
    "hub_key": ("khóa ký của trục: {access} ({alg}, đơn vị {unit})", "hub signing key: {access} ({alg}, unit {unit})"),
    "axis_sim_listening": ("trình mô phỏng trục quốc gia (VXP) đang phục vụ tại {url} cho {n} hệ thống "
                           "(Ctrl+C để dừng)",
                           "national axis (VXP) simulator is listening on {url} for {n} system(s) (Ctrl+C to stop)"),
    "axis_synced": ("đã đồng bộ danh bạ trục quốc gia vào vùng {zone}: thêm {added}, cập nhật {updated}, "
                    "tạm dừng {suspended}, bỏ qua {skipped}",
                    "national axis directory synchronised into zone {zone}: {added} added, {updated} updated, "
                    "{suspended} suspended, {skipped} skipped"),
    "axis_not_configured": ("chưa cấu hình {section} (xem docs/national-axis.md)",
                            "{section} is not configured (see docs/national-axis.md)"),
    "axis_failed": ("trục quốc gia trả lỗi {code}: {desc}", "the national axis answered {code}: {desc}"),
    "route_decision": ("{unit}: vùng {zone}, tuyến {route} — {reason}",
                       "{unit}: zone {zone}, route {route} — {reason}"),
    "route_refused": ("{unit}: không có tuyến — {reason}", "{unit}: no route — {reason}"),
    "axis_sim_no_system": ("cần ít nhất một hệ thống: --system ID:SECRET:AGENCY hoặc --systems-file FILE",
                           "at least one system is needed: --system ID:SECRET:AGENCY or --systems-file FILE"),
    "watching": ("đang theo dõi sự kiện (Ctrl+C để dừng)…", "watching events (Ctrl+C to stop)…"),
    "h_id": ("MÃ", "ID"), "h_name": ("TÊN", "NAME"), "h_parent": ("CẤP TRÊN", "PARENT"), "h_zone": ("VÙNG", "ZONE"),
    "h_status": ("TRẠNG THÁI", "STATUS"), "h_unit": ("ĐƠN VỊ", "UNIT"), "h_app": ("ỨNG DỤNG", "APPLICATION"),
    "h_key": ("KHÓA", "KEY"), "h_alg": ("THUẬT TOÁN", "ALGORITHM"), "h_created": ("TẠO LÚC", "CREATED"),
    "h_from": ("TỪ", "FROM"), "h_subject": ("TRÍCH YẾU", "SUBJECT"), "h_priority": ("ĐỘ KHẨN", "PRIORITY"),
    "h_size": ("KÍCH THƯỚC", "SIZE"), "h_online": ("TRỰC TUYẾN", "ONLINE"), "h_seen": ("LẦN CUỐI", "LAST SEEN"),
    "active": ("hoạt động", "active"), "revoked": ("đã thu hồi", "revoked"),
    "yes": ("có", "yes"), "no": ("không", "no"),
    # lgsp masterkey (cli/masterkey.py)
    "mk_status": ("tệp khóa chủ {file}: khóa đang niêm phong {primary}; khóa cũ còn giữ: {older}; "
                  "giá trị còn niêm phong bằng khóa cũ: {left}; khóa bọc (KEK): {kek}",
                  "master key file {file}: sealing key {primary}; older keys held: {older}; "
                  "values still sealed under older keys: {left}; key-encryption key: {kek}"),
    "mk_rotated": ("đã tạo khóa chủ mới {new}; đã niêm phong lại {n} giá trị ({detail})",
                   "new master key {new}; re-sealed {n} values ({detail})"),
    "mk_retired": ("đã loại bỏ khóa chủ cũ: {ids}. Bản sao lưu lấy trước khi xoay khóa cần tệp khóa cũ",
                   "retired the old master keys: {ids}. Backups taken before the rotation need the old key file"),
    "mk_kept": ("giữ khóa cũ để mở các địa chỉ tải đã cấp; loại bỏ sau bằng: lgsp masterkey retire",
                "the old key is kept for transfer URLs already issued; retire it later with: lgsp masterkey retire"),
    "mk_left": ("còn {left} giá trị niêm phong bằng khóa cũ; khóa cũ chưa được loại bỏ, hãy chạy lại lệnh",
                "{left} values are still sealed under an old key; the old key was not retired, run the command again"),
}


#: The languages the CLI speaks; LGSP_LANG picks one (Vietnamese when unset).
LANGUAGES = ("vi", "en")


def lang() -> str:
    """`en` or `vi` from LGSP_LANG (`en_US.UTF-8`-style values count by their first part)."""
    return "en" if os.environ.get("LGSP_LANG", "vi").lower().startswith("en") else "vi"


def unknown_language() -> str | None:
    """The LGSP_LANG value when it names no language the CLI speaks, else None."""
    value = os.environ.get("LGSP_LANG", "").strip()
    if not value:
        return None
    base = value.lower().replace("-", "_").split("_", 1)[0].split(".", 1)[0]
    return None if base in LANGUAGES else value


def t(message: str, /, **values: object) -> str:
    vi, en = MESSAGES[message]
    return (en if lang() == "en" else vi).format(**values)
