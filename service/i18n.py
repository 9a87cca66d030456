"""Every word the web pages and the field report show, one table per language.

English is complete and is the fallback: a key missing from another language shows in English
rather than as a blank. Urdu is written right to left (`DIRECTION`), in a Nastaliq font where one is
installed (Debian's fonts-noto-extra has Noto Nastaliq Urdu). Numbers stay in Western digits, as on
Pakistani forms and receipts.
"""

from __future__ import annotations

LANGUAGES = {"en": "English", "ur": "اردو"}
DIRECTION = {"en": "ltr", "ur": "rtl"}

EN: dict[str, str] = {
    "mgmt_title": "Management zones and prescriptions",
    "mgmt_zones": "Management zones from {index}",
    "zone": "Zone",
    "mean_index": "Mean {index}",
    "spread": "Spread (sd)",
    "weed_share_col": "Weed",
    "zones_note": "Zone 1 has the lowest {index}. {how}",
    "zones_how": "{library}; {features}; {count}; minimum zone {min}.",
    "zones_how_features": "{index} averaged over each map cell, smoothed over {n}x{n} cells, "
    "standardised",
    "zones_how_flights": " per flight ({flights} flights)",
    "zones_how_user": "number of zones given by the user",
    "zones_how_auto": "the fewest zones ({lo}-{hi}) whose clustering explains at least {share} "
    "of the index variance",
    "zones_placed_approx": "The image has no map coordinates: the zones and prescriptions are "
    "placed at the camera's GPS position, so a machine following them is off by the GPS error.",
    "rate_title": "Variable rate: {product}",
    "rate_col": "Rate ({unit})",
    "product_col": "Product ({unit})",
    "rate_total": "Total {total} {unit} over {area} (mean {mean} {rate_unit}).",
    "spot_title": "Spot spray",
    "spot_how": "{cells} of the map ({cell} m), patches under {patch} m² left out, buffered by "
    "{margin} m, merged and clipped to the field's analysed cells",
    "spot_cells_weed": "Weed cells",
    "spot_cells_vegetation": "Vegetation cells",
    "spot_cells_cover_weed": "Cells with weed cover of at least {pct}% (cover.tif) or weed cells",
    "spot_cells_cover_vegetation": "Cells with vegetation cover of at least {pct}% (cover.tif) "
    "or vegetation cells",
    "spot_line": "Spray {sprayed} of {field} ({share} of the field): {saving} less {product} "
    "than spraying the whole field ({total} instead of {blanket} {unit}).",
    "downloads": "Downloads",
    "make_zones": "Make zones",
    "zone_count": "Number of zones",
    "zone_count_auto": "Let Khet choose",
    "base_rate": "Base rate",
    "adjust": "More (+) or less (-) in the strongest zone, %",
    "product": "Product",
    "unit": "Unit",
    "make_rate": "Make the prescription",
    "make_spot": "Make the spot-spray map",
    "margin": "Margin around weeds (m)",
    "min_patch": "Smallest patch (m²)",
    "total_product": "Total",
    "layer_zones": "Management zones",
    "app_name": "Khet",
    "tagline": "Field maps from drone images",
    "skip": "Skip to content",
    "language": "Language",
    "log_in": "Log in",
    "log_out": "Log out",
    "account": "Your account",
    "change_password": "Change your password",
    "change_password_intro": "Your other browsers are logged out when you change it.",
    "current_password": "Current password",
    "new_password": "New password (at least 8 characters)",
    "password_changed": "Password changed; your other browsers were logged out.",
    "sessions": "Where you are logged in",
    "since": "Since",
    "last_seen": "Last seen",
    "from": "From",
    "this_browser": "this browser",
    "end_session": "Log out there",
    "session_ended": "That browser was logged out.",
    "tokens": "API tokens (devices and scripts)",
    "tokens_intro": "A device that is lost or sold: revoke its token here.",
    "no_tokens": "No API tokens.",
    "token_name": "Name",
    "last_used": "Last used",
    "expires": "Expires",
    "never": "never",
    "revoke": "Revoke",
    "token_revoked": "The token was revoked; the device can no longer send flights.",
    "email": "Email",
    "password": "Password",
    "login_title": "Log in to Khet",
    "login_intro": "See where the crop is, where weeds are and where the crop is weak, "
    "in hectares, on a map.",
    "login_failed": "Wrong email or password.",
    "current_password_wrong": "Your current password is not right; the password was not changed.",
    "login_limited": "Too many failed logins: wait a few minutes and try again, or ask an "
    "administrator.",
    "dashboard": "Your fields",
    "dashboard_worker": "Farms assigned to you",
    "no_farms": "You have no farms yet. Create one with the API (POST /api/v1/farms) or ask "
    "an administrator.",
    "no_farms_worker": "No farms are assigned to you yet. An administrator assigns them "
    "(khet user assign).",
    "no_fields": "This farm has no fields yet.",
    "farm": "Farm",
    "field": "Field",
    "crop": "Crop",
    "area": "Area",
    "latest_flight": "Latest flight",
    "latest_map": "Latest map",
    "no_flights": "No flights yet",
    "needs_visit": "Needs a visit",
    "looks_fine": "No visit needed",
    "visit_reason": "weeds {weed} · weak crop {low}",
    "open_field": "Open field",
    "upload": "Upload a flight",
    "status": "Status",
    "status_queued": "Waiting in the queue",
    "status_running": "Being analysed",
    "status_done": "Map ready",
    "status_failed": "Analysis failed",
    "thresholds": "When does a field need a visit?",
    "thresholds_intro": "A field is flagged when its latest flight shows more weeds, or more "
    "weak crop, than these shares.",
    "weed_threshold": "Weed share above (%)",
    "low_threshold": "Weak-crop share above (% of crop)",
    "save": "Save",
    "saved": "Saved.",
    "threshold_invalid": "{what}: “{value}” is not a percentage from 0 to 100. Nothing was "
    "saved; the old value, {old}, still holds.",
    "flights": "Flights",
    "flight": "Flight",
    "date": "Date",
    "weeds": "Weeds",
    "weak_crop": "Weak crop",
    "map": "Map",
    "report": "Report",
    "compare": "Compare two flights",
    "compare_btn": "Compare",
    "earlier": "Earlier flight",
    "later": "Later flight",
    "change": "Change",
    "compare_need_two": "Two finished flights of this field are needed to compare.",
    "compare_units_differ": "One of these flights has no map coordinates, so areas are compared "
    "as shares of the image, not hectares.",
    "compare_uncalibrated": "Flight {flights} is uncalibrated: its vegetation index values are "
    "raw sensor numbers, not reflectance, so a change in crop vigour or index between these "
    "flights may only be a change in the light.",
    "index_reflectance": "Vegetation indices are computed from reflectance (calibrated with "
    "{method}), so they can be compared with other calibrated flights.",
    "index_uncalibrated": "UNCALIBRATED: this flight's vegetation indices come from raw sensor "
    "numbers, not reflectance. They cannot be compared with other flights: a change may only be "
    "a change in the light.",
    "cal_panel+dls": "the reflectance panel and the light sensor",
    "cal_panel": "the reflectance panel",
    "cal_dls": "the light sensor",
    "upload_title": "Upload drone images",
    "upload_intro": "Choose one image (GeoTIFF, JPEG or PNG), all band files of one capture, or "
    "all frames of a flight (they are mosaicked into one map). "
    "If the connection drops, the upload waits and continues where it stopped.",
    "files": "Image files",
    "captured_at": "Flight date",
    "field_crop": "Crop growing in this field",
    "field_crop_hint": "A learned model maps crop and weed only on the crop it learned (Khet's "
    "drone model: potato); on other crops the crop rows tell them apart, where the map finds "
    "them. Name every crop the field grows (e.g. potato and maize). Saved with the field.",
    "field_crop_fixed": "Only the farm's owner can change the field's crop.",
    "bands": "Band names (optional, comma-separated, e.g. red,green,blue)",
    "gsd_cm": "Ground resolution (optional, cm per pixel, e.g. 3): for photos that do not "
    "record their flying height",
    "gsd_invalid": "The ground resolution is centimetres of ground per pixel: a number such as 3 "
    "(or leave it empty).",
    "start_upload": "Upload and analyse",
    "step_hash": "Checking the files",
    "step_upload": "Uploading",
    "step_analyse": "Analysing",
    "offline_retry": "Connection lost. Trying again in {s} s; nothing already sent is lost.",
    "upload_done": "Done. Opening the map…",
    "choose_files": "Choose at least one file.",
    "map_title": "Field map",
    "layers": "Layer",
    "layer_imagery": "Image only",
    "layer_classes": "Soil, crop and weeds",
    "layer_vigour": "Crop vigour",
    "opacity": "Map opacity",
    "legend": "Legend",
    "click_hint": "Click or tap the map to see what is at that point.",
    "point_class": "Class",
    "point_confidence": "Confidence",
    "point_vigour": "Vigour",
    "point_outside": "Outside the map.",
    "no_georef": "This flight's imagery has no map projection in its files (a camera's GPS "
    "position places it only approximately), so the map is not drawn on the earth: here is the "
    "analysed image instead. Areas are approximate hectares where the ground sample distance is "
    "known, otherwise shares of the image.",
    "not_ready": "The map is not ready yet.",
    "failed": "The analysis failed",
    "retry": "Try again",
    "retry_intro": "Correct what the message asks for, if anything, then try again.",
    "retry_bands": "Band names in file order (e.g. red,green,blue), or leave empty",
    "near_ir_title": "This map is probably wrong",
    "near_ir": "{share} of the picture is red-purple: the colour of plants in pictures from a "
    "camera converted to record near-infrared in place of red. Read as an ordinary colour "
    "picture, those plants were counted as soil. If the camera is converted, analyse it again "
    "with its band names (usually nir,green,blue).",
    "band_order": "{share} of the picture has near-infrared darker than red (or green), more "
    "than reads as plants. Plants and soil are brighter in near-infrared; only open water is "
    "darker. Unless the field is under water, the bands were named in the wrong order (read as "
    "{bands}) and the plants were counted as soil: analyse it again with the bands in the "
    "camera's order.",
    "swapped": "{share} of the picture is strong blue with red its weakest colour: the colour "
    "of bare soil when a picture's red and blue are swapped (saved blue, green, red, as some "
    "programs save it). On such colours the drone model takes soil for crop, so the map was "
    "made without it. Unless this is water, analyse it again with its bands named "
    "blue,green,red.",
    "rerun": "Analyse again",
    "crop_unstated_title": "Crop and weed may be wrong here",
    "crop_unstated": "This field's crop was not set when this map was made. Its crop and weed "
    "come from a model that learned {crops} only: on another crop it cannot tell crop from weed "
    "(on carrots it painted half the carrots weed). Set the field's crop, every crop it grows, "
    "and analyse it again.",
    "crop_rerun": "Save the crop and analyse again",
    "crop_needed": "Give the field's crop (e.g. potato, or potato and maize).",
    "crop_on_device": "This map was made on a field device: run it again there with the field's "
    "crop (khet edge run --crop) and the new map arrives as a flight of its own.",
    "crop_name_potato": "potato",
    "crop_name_carrot": "carrot",
    "rerun_owner_only": "Only the farm's owner or an administrator can analyse it again.",
    "rerun_on_device": "This map was made on a field device: run it again there (khet edge run, "
    "with --bands) and the new map arrives as a flight of its own.",
    "retry_gsd": "Ground sample distance, metres per pixel (e.g. 0.03), or leave empty",
    "download": "Downloads",
    "pdf": "Download PDF",
    "print": "Print",
    "report_title": "Field report",
    "location": "Location",
    "location_unknown": "unknown",
    "approx_location": "approximate, from the camera's GPS",
    "total_area": "Mapped area",
    "classes_table": "Area by class",
    "vigour_table": "Crop vigour",
    "share": "Share",
    "share_of_crop": "Share of crop",
    "hectares": "Hectares",
    "square_metres": "Square metres",
    "class": "Class",
    "level": "Level",
    "class_share_chart": "Share of the field by class",
    "histogram": "{index} across the field",
    "median": "median",
    "histogram_note": "How many pixels have each {index} value; higher means greener, denser "
    "plants.",
    "next_steps": "What to do next",
    "model": "About this map",
    "model_line": "Model {name}, version {version}.",
    "limits": "The model was trained on close-range photos (millimetres per pixel) and is applied "
    "here to drone images: treat the map as indicative and check it on foot before "
    "you spray or fertilise.",
    "vigour_limits": "Crop vigour compares each part of the crop with the rest of this field; "
    "it shows where the crop is weaker, not why (water, nutrients, pests or "
    "sowing).",
    "vigour_rule": "Crop vigour is a rule, not a learned class: a crop cell is low when its mean "
    "{index} is below {low}, high when it is above {high}, else medium. These limits are the "
    "median of this flight's crop cells ({median}) minus or plus 1.5 robust spreads, and at least "
    "0.05 from it. It shows where the crop is weaker than the rest of this field, not why.",
    "vigour_rule_vegetation": "Crop is not told apart here, so all vegetation is compared.",
    "gsd_line": "Each pixel covers {gsd} of ground ({how}).",
    "gsd_from_crs": "from the map's coordinates",
    "gsd_from_camera": "from the drone's height and camera; approximate",
    "gsd_from_user": "as given",
    "gsd_unknown": "How much ground a pixel covers is unknown, so crop and weeds are not told "
    "apart.",
    "method_model": "Crop and weeds were told apart by the learned model {name} {version}, which "
    "reads the image at {gsd} per pixel.",
    "method_model_range": "It was tested on drone images from {lo} to {hi} per pixel.",
    "method_rows": "Crop and weeds were told apart by the crop rows found in the image (about "
    "{spacing} m apart): plants on a row are crop, plants between the rows are weeds.",
    "method_index": "This map does not tell crop from weeds at this image's resolution: it shows "
    "plants and bare soil, from the vegetation index.",
    "limits_model": "A learned model can be wrong on crops, soils and light it has not seen: "
    "check the map on foot before you spray or fertilise.",
    "limits_rows": "A weed growing inside a row counts as crop, and where no rows were found "
    "plants are shown as vegetation: check on foot before you spray.",
    "limits_index": "To tell crop from weeds, fly lower (1.5 cm per pixel or finer) or map a row "
    "crop between 1 and 10 cm per pixel.",
    "weed_cover": "Weeds cover {pct} of the mapped area.",
    "cls_vegetation": "Vegetation",
    "label_rule": "How the training images were labelled: {rule}",
    "warnings": "Notes from the analysis",
    "approx_ha": "about {ha} ha",
    "px_note": "No georeference: shares of the image, not hectares.",
    "generated": "Made with Khet {version} on {date}.",
    # class and level names
    "cls_soil": "Soil",
    "cls_crop": "Crop",
    "cls_weed": "Weeds",
    "lvl_low": "Low",
    "lvl_medium": "Medium",
    "lvl_high": "High",
    # directions
    "dir_n": "north",
    "dir_ne": "north-east",
    "dir_e": "east",
    "dir_se": "south-east",
    "dir_s": "south",
    "dir_sw": "south-west",
    "dir_w": "west",
    "dir_nw": "north-west",
    "dir_c": "centre",
    "img_n": "top",
    "img_ne": "top right",
    "img_e": "right",
    "img_se": "bottom right",
    "img_s": "bottom",
    "img_sw": "bottom left",
    "img_w": "left",
    "img_nw": "top left",
    "img_c": "middle",
    # advice
    "advice_weed_patch": "Scout the {area} weed patch in the {where} of the field and remove the "
    "weeds before they set seed.",
    "advice_weed_patch_img": "Scout the weed patch ({share} of the image) at the {where} of the "
    "image.",
    "advice_weed_wide": "Weeds cover {share} of the field: plan weeding across the whole field, "
    "not only spots.",
    "advice_low_patch": "Walk the weak crop ({area}) in the {where}: look for dry soil, "
    "yellow leaves, pests or gaps in sowing.",
    "advice_low_patch_img": "Walk the weak crop ({share} of the crop) at the {where} of the "
    "image: look for dry soil, yellow leaves, pests or gaps in sowing.",
    "advice_all_good": "No weed patch or weak area stands out. Fly again in two to three weeks "
    "to follow the crop.",
    "advice_check": "The map is indicative: confirm on foot before spraying or fertilising.",
    "advice_none": "The map shows no crop or weeds; check that the right field was flown.",
    "advice_vegetation_only": "The map shows plants on {share} of the field but cannot tell "
    "crop from weeds: {why}. Walk the field to see which plants are weeds before you spray.",
    "advice_crop_unstated": "The field's crop was not set: crop and weeds on this map come "
    "from a model that learned {crops} only. If the field grows anything else, set its crop and "
    "analyse the flight again before acting on the weeds.",
    "why_gsd_unknown": "how much ground a pixel covers is unknown, and crop and weeds are told "
    "apart only when it is known",
    "why_no_rows": "no model is made for this image and no crop rows were found in it",
    "why_crop": "Khet's model has not learned {crop}, the field's crop, and no crop rows were "
    "found in the image",
    "why_resolution": "at {gsd} per pixel no model is made for this image, and crop rows are "
    "looked for only from 2 mm to 10 cm per pixel",
    "why_rows_none": "the plants lie where no crop rows were found",
    "why_other": "the method that made this map shows plants and soil only",
    "not_found": "Not found",
    "not_found_text": "There is no such page, or you do not have access to it.",
    "back": "Back to your fields",
}

UR: dict[str, str] = {
    "mgmt_title": "انتظامی زون، کھاد اور سپرے کے نقشے",
    "mgmt_zones": "{index} کے لحاظ سے انتظامی زون",
    "zone": "زون",
    "mean_index": "اوسط {index}",
    "spread": "پھیلاؤ (sd)",
    "weed_share_col": "جڑی بوٹیاں",
    "zones_note": "زون 1 میں {index} سب سے کم ہے۔ {how}",
    "zones_how": "{library}؛ {features}؛ {count}؛ سب سے چھوٹا زون {min}۔",
    "zones_how_features": "{index} ہر نقشہ خانے پر اوسط، {n}x{n} خانوں پر ہموار، معیاری بنایا گیا",
    "zones_how_flights": "، ہر پرواز الگ ({flights} پروازیں)",
    "zones_how_user": "زونوں کی تعداد صارف نے دی",
    "zones_how_auto": "کم سے کم زون ({lo} تا {hi}) جن کی گروہ بندی "
    "انڈیکس کے فرق کا کم از کم {share} واضح کرے",
    "zones_placed_approx": "تصویر کے نقشے والے کوآرڈینیٹ نہیں ہیں: زون اور نقشے کیمرے کے GPS "
    "مقام پر رکھے گئے ہیں، اس لیے مشین GPS کی غلطی جتنا ہٹ سکتی ہے۔",
    "rate_title": "زون وار مقدار: {product}",
    "rate_col": "مقدار ({unit})",
    "product_col": "کل ({unit})",
    "rate_total": "کل {total} {unit}، {area} پر (اوسط {mean} {rate_unit})۔",
    "spot_title": "صرف جڑی بوٹیوں پر سپرے",
    "spot_how": "نقشے کے {cells} ({cell} میٹر)، {patch} مربع میٹر سے چھوٹے ٹکڑے چھوڑ دیے، "
    "{margin} میٹر کا حاشیہ، پھر ملا کر کھیت کے جانچے گئے خانوں تک محدود",
    "spot_cells_weed": "جڑی بوٹیوں والے خانے",
    "spot_cells_vegetation": "سبزے والے خانے",
    "spot_cells_cover_weed": "وہ خانے جن میں جڑی بوٹیاں کم از کم {pct}% ہوں (cover.tif) یا "
    "جڑی بوٹیوں والے خانے",
    "spot_cells_cover_vegetation": "وہ خانے جن میں سبزہ کم از کم {pct}% ہو (cover.tif) یا "
    "سبزے والے خانے",
    "spot_line": "{field} میں سے {sprayed} ({share}) پر سپرے کریں: پورے کھیت پر سپرے کے "
    "مقابلے میں {saving} کم {product} ({blanket} کی بجائے {total} {unit})۔",
    "downloads": "ڈاؤن لوڈ",
    "make_zones": "زون بنائیں",
    "zone_count": "زونوں کی تعداد",
    "zone_count_auto": "کھیت خود چنے",
    "base_rate": "بنیادی مقدار",
    "adjust": "سب سے مضبوط زون میں زیادہ (+) یا کم (-)، فیصد",
    "product": "پروڈکٹ",
    "unit": "اکائی",
    "make_rate": "نقشہ بنائیں",
    "make_spot": "سپرے کا نقشہ بنائیں",
    "margin": "جڑی بوٹیوں کے گرد فاصلہ (میٹر)",
    "min_patch": "سب سے چھوٹا ٹکڑا (مربع میٹر)",
    "total_product": "کل",
    "layer_zones": "انتظامی زون",
    "app_name": "کھیت",
    "tagline": "ڈرون تصویروں سے کھیت کا نقشہ",
    "skip": "مواد پر جائیں",
    "language": "زبان",
    "log_in": "لاگ ان",
    "log_out": "لاگ آؤٹ",
    "account": "آپ کا اکاؤنٹ",
    "change_password": "پاس ورڈ تبدیل کریں",
    "change_password_intro": "تبدیل کرنے پر آپ کے دوسرے براؤزر لاگ آؤٹ ہو جائیں گے۔",
    "current_password": "موجودہ پاس ورڈ",
    "new_password": "نیا پاس ورڈ (کم از کم 8 حروف)",
    "password_changed": "پاس ورڈ تبدیل ہو گیا؛ دوسرے براؤزر لاگ آؤٹ ہو گئے۔",
    "sessions": "جہاں آپ لاگ ان ہیں",
    "since": "کب سے",
    "last_seen": "آخری بار",
    "from": "کہاں سے",
    "this_browser": "یہ براؤزر",
    "end_session": "وہاں لاگ آؤٹ کریں",
    "session_ended": "وہ براؤزر لاگ آؤٹ ہو گیا۔",
    "tokens": "API ٹوکن (آلات اور اسکرپٹ)",
    "tokens_intro": "کوئی آلہ گم یا فروخت ہو جائے تو اس کا ٹوکن یہاں منسوخ کریں۔",
    "no_tokens": "کوئی API ٹوکن نہیں۔",
    "token_name": "نام",
    "last_used": "آخری استعمال",
    "expires": "میعاد",
    "never": "کبھی نہیں",
    "revoke": "منسوخ کریں",
    "token_revoked": "ٹوکن منسوخ ہو گیا؛ آلہ اب پروازیں نہیں بھیج سکتا۔",
    "email": "ای میل",
    "password": "پاس ورڈ",
    "login_title": "کھیت میں لاگ ان کریں",
    "login_intro": "نقشے پر دیکھیں کہ فصل کہاں ہے، جڑی بوٹیاں کہاں ہیں اور فصل کہاں کمزور ہے، "
    "ہیکٹر میں۔",
    "login_failed": "ای میل یا پاس ورڈ غلط ہے۔",
    "current_password_wrong": "آپ کا موجودہ پاس ورڈ درست نہیں؛ پاس ورڈ تبدیل نہیں ہوا۔",
    "login_limited": "بہت زیادہ ناکام کوششیں: چند منٹ انتظار کریں اور دوبارہ کوشش کریں، "
    "یا منتظم سے رابطہ کریں۔",
    "dashboard": "آپ کے کھیت",
    "dashboard_worker": "آپ کو سونپے گئے فارم",
    "no_farms": "ابھی آپ کا کوئی فارم نہیں ہے۔",
    "no_farms_worker": "ابھی آپ کو کوئی فارم نہیں سونپا گیا۔",
    "no_fields": "اس فارم میں ابھی کوئی کھیت نہیں۔",
    "farm": "فارم",
    "field": "کھیت",
    "crop": "فصل",
    "area": "رقبہ",
    "latest_flight": "آخری پرواز",
    "latest_map": "آخری نقشہ",
    "no_flights": "ابھی کوئی پرواز نہیں",
    "needs_visit": "دورہ ضروری ہے",
    "looks_fine": "دورے کی ضرورت نہیں",
    "visit_reason": "جڑی بوٹیاں {weed} · کمزور فصل {low}",
    "open_field": "کھیت کھولیں",
    "upload": "پرواز اپ لوڈ کریں",
    "status": "حالت",
    "status_queued": "قطار میں",
    "status_running": "تجزیہ جاری ہے",
    "status_done": "نقشہ تیار ہے",
    "status_failed": "تجزیہ ناکام",
    "thresholds": "کھیت کا دورہ کب ضروری ہے؟",
    "thresholds_intro": "جب آخری پرواز میں جڑی بوٹیاں یا کمزور فصل ان حدوں سے زیادہ ہو تو کھیت "
    "پر نشان لگتا ہے۔",
    "weed_threshold": "جڑی بوٹیوں کا حصہ (%) سے زیادہ",
    "low_threshold": "کمزور فصل کا حصہ (% فصل) سے زیادہ",
    "save": "محفوظ کریں",
    "saved": "محفوظ ہو گیا۔",
    "threshold_invalid": "{what}: “{value}” 0 سے 100 کے درمیان کوئی فیصد نہیں۔ کچھ محفوظ نہیں "
    "ہوا؛ پرانی حد، {old}، برقرار ہے۔",
    "flights": "پروازیں",
    "flight": "پرواز",
    "date": "تاریخ",
    "weeds": "جڑی بوٹیاں",
    "weak_crop": "کمزور فصل",
    "map": "نقشہ",
    "report": "رپورٹ",
    "compare": "دو پروازوں کا موازنہ",
    "compare_btn": "موازنہ کریں",
    "earlier": "پہلی پرواز",
    "later": "بعد کی پرواز",
    "change": "تبدیلی",
    "compare_need_two": "موازنے کے لیے اس کھیت کی دو مکمل پروازیں چاہییں۔",
    "compare_units_differ": "ایک پرواز کے نقشے کے کوآرڈینیٹ نہیں، اس لیے رقبہ ہیکٹر کی بجائے "
    "تصویر کے حصے کے طور پر دکھایا گیا ہے۔",
    "compare_uncalibrated": "پرواز {flights} غیر کیلیبریٹ شدہ ہے: اس کے نباتاتی اشاریے سینسر کے "
    "خام اعداد ہیں، انعکاس نہیں، اس لیے ان پروازوں کے درمیان فصل کی قوت یا اشاریے کا فرق صرف "
    "روشنی کا فرق بھی ہو سکتا ہے۔",
    "index_reflectance": "نباتاتی اشاریے انعکاس سے نکالے گئے ہیں ({method} سے کیلیبریٹ شدہ)، اس "
    "لیے انہیں دوسری کیلیبریٹ شدہ پروازوں سے ملایا جا سکتا ہے۔",
    "index_uncalibrated": "غیر کیلیبریٹ شدہ: اس پرواز کے نباتاتی اشاریے سینسر کے خام اعداد سے "
    "ہیں، انعکاس سے نہیں۔ انہیں دوسری پروازوں سے نہیں ملایا جا سکتا: فرق صرف روشنی کا بھی ہو "
    "سکتا ہے۔",
    "cal_panel+dls": "ریفلیکٹنس پینل اور روشنی کے سینسر",
    "cal_panel": "ریفلیکٹنس پینل",
    "cal_dls": "روشنی کے سینسر",
    "upload_title": "ڈرون تصویریں اپ لوڈ کریں",
    "upload_intro": "ایک تصویر، ایک کیپچر کی تمام بینڈ فائلیں، یا ایک پرواز کی تمام تصویریں چنیں "
    "(انہیں جوڑ کر ایک نقشہ بنتا ہے)۔ کنکشن ٹوٹ جائے تو اپ لوڈ "
    "انتظار کر کے وہیں سے جاری رہتا ہے۔",
    "files": "تصویری فائلیں",
    "captured_at": "پرواز کی تاریخ",
    "field_crop": "اس کھیت میں اگنے والی فصل",
    "field_crop_hint": "سیکھا ہوا ماڈل فصل اور جڑی بوٹی صرف اسی فصل پر دکھاتا ہے جو اس نے سیکھی ہے "
    "(Khet کا ڈرون ماڈل: آلو)؛ دوسری فصلوں پر، جہاں نقشے کو فصل کی قطاریں ملیں، "
    "وہ ان سے فرق کرتا ہے۔ کھیت کی ہر فصل کا نام لکھیں (مثلاً آلو اور مکئی)۔ "
    "یہ کھیت کے ساتھ محفوظ ہوتی ہے۔",
    "field_crop_fixed": "کھیت کی فصل صرف فارم کا مالک بدل سکتا ہے۔",
    "bands": "بینڈ کے نام (اختیاری)",
    "gsd_cm": "زمینی ریزولوشن (اختیاری، سینٹی میٹر فی پکسل، مثلاً 3): "
    "ان تصویروں کے لیے جن میں پرواز کی اونچائی درج نہیں",
    "gsd_invalid": "زمینی ریزولوشن فی پکسل زمین کے سینٹی میٹر ہے: 3 جیسا کوئی عدد لکھیں "
    "(یا خالی چھوڑ دیں)۔",
    "start_upload": "اپ لوڈ اور تجزیہ کریں",
    "step_hash": "فائلوں کی جانچ",
    "step_upload": "اپ لوڈ",
    "step_analyse": "تجزیہ",
    "offline_retry": "کنکشن ٹوٹ گیا۔ {s} سیکنڈ میں دوبارہ کوشش؛ بھیجا ہوا ڈیٹا محفوظ ہے۔",
    "upload_done": "مکمل۔ نقشہ کھل رہا ہے…",
    "choose_files": "کم از کم ایک فائل چنیں۔",
    "map_title": "کھیت کا نقشہ",
    "layers": "پرت",
    "layer_imagery": "صرف تصویر",
    "layer_classes": "مٹی، فصل اور جڑی بوٹیاں",
    "layer_vigour": "فصل کی طاقت",
    "opacity": "نقشے کی شفافیت",
    "legend": "علامات",
    "click_hint": "کسی جگہ کی تفصیل کے لیے نقشے پر کلک کریں۔",
    "point_class": "قسم",
    "point_confidence": "یقین",
    "point_vigour": "طاقت",
    "point_outside": "نقشے سے باہر۔",
    "no_georef": "اس پرواز کی تصویر کی فائلوں میں نقشے کا پروجیکشن نہیں (کیمرے کا GPS مقام اسے "
    "صرف اندازاً رکھتا ہے)، اس لیے نقشہ زمین پر نہیں بنایا جاتا: یہ تجزیہ شدہ تصویر ہے۔ جہاں "
    "زمینی فاصلہ فی پکسل معلوم ہو وہاں رقبہ اندازاً ہیکٹر میں ہے، ورنہ تصویر کا حصہ۔",
    "not_ready": "نقشہ ابھی تیار نہیں۔",
    "failed": "تجزیہ ناکام ہو گیا",
    "retry": "دوبارہ کوشش",
    "retry_intro": "پیغام میں جو درستی مانگی گئی ہے وہ کریں، پھر دوبارہ کوشش کریں۔",
    "retry_bands": "فائل کی ترتیب میں بینڈز کے نام (مثلاً red,green,blue)، یا خالی چھوڑ دیں",
    "near_ir_title": "یہ نقشہ غالباً غلط ہے",
    "near_ir": "تصویر کا {share} حصہ سرخی مائل جامنی ہے: یہ ان پودوں کا رنگ ہے جن کی تصویر ایسے "
    "کیمرے سے لی گئی ہو جو سرخ کی جگہ انفراریڈ (NIR) ریکارڈ کرتا ہے۔ عام رنگین تصویر سمجھ کر "
    "پڑھنے سے یہ پودے مٹی شمار ہوئے۔ اگر کیمرا ایسا ہے تو اس کے بینڈز کے نام (عموماً "
    "nir,green,blue) دے کر دوبارہ تجزیہ کریں۔",
    "band_order": "تصویر کے {share} حصے میں انفراریڈ (NIR) سرخ (یا سبز) سے زیادہ گہرا ہے، اور "
    "یہ پودوں والے حصے سے زیادہ ہے۔ پودے اور مٹی انفراریڈ میں زیادہ روشن ہوتے ہیں؛ صرف کھلا پانی "
    "گہرا ہوتا ہے۔ اگر کھیت میں پانی کھڑا نہیں تو بینڈز کے نام غلط ترتیب میں دیے گئے ({bands} "
    "پڑھا گیا) اور پودے مٹی شمار ہوئے: کیمرے کی ترتیب میں بینڈز کے نام دے کر دوبارہ تجزیہ کریں۔",
    "swapped": "تصویر کا {share} حصہ گہرا نیلا ہے اور اس میں سرخ رنگ سب سے کم ہے: یہ ننگی مٹی کا "
    "رنگ ہے جب تصویر کے سرخ اور نیلے رنگ آپس میں بدل جائیں (کچھ پروگرام تصویر نیلا، سبز، سرخ کی "
    "ترتیب میں محفوظ کرتے ہیں)۔ ایسے رنگوں پر ڈرون ماڈل مٹی کو فصل سمجھتا ہے، اس لیے نقشہ اس کے "
    "بغیر بنا۔ اگر یہ پانی نہیں تو بینڈز کے نام blue,green,red دے کر دوبارہ تجزیہ کریں۔",
    "rerun": "دوبارہ تجزیہ کریں",
    "crop_unstated_title": "یہاں فصل اور جڑی بوٹی غلط ہو سکتی ہیں",
    "crop_unstated": "جب یہ نقشہ بنا تو اس کھیت کی فصل درج نہیں تھی۔ اس کی فصل اور جڑی بوٹی ایسے "
    "ماڈل سے ہیں جس نے صرف {crops} سیکھی ہے: کسی اور فصل پر یہ فصل اور جڑی بوٹی میں فرق نہیں کر "
    "سکتا (گاجر کے کھیت میں اس نے آدھی گاجریں جڑی بوٹی دکھائیں)۔ کھیت کی فصل درج کریں، ہر وہ "
    "فصل جو اس میں اگتی ہے، اور دوبارہ تجزیہ کریں۔",
    "crop_rerun": "فصل محفوظ کریں اور دوبارہ تجزیہ کریں",
    "crop_needed": "کھیت کی فصل لکھیں (مثلاً آلو، یا آلو اور مکئی)۔",
    "crop_on_device": "یہ نقشہ کھیت کے آلے (ڈیوائس) پر بنا تھا: وہیں کھیت کی فصل کے ساتھ دوبارہ "
    "چلائیں (khet edge run --crop)، نیا نقشہ الگ پرواز کے طور پر آ جائے گا۔",
    "crop_name_potato": "آلو",
    "crop_name_carrot": "گاجر",
    "rerun_owner_only": "صرف فارم کا مالک یا منتظم دوبارہ تجزیہ کر سکتا ہے۔",
    "rerun_on_device": "یہ نقشہ کھیت کے آلے (ڈیوائس) پر بنا تھا: وہیں دوبارہ چلائیں "
    "(khet edge run، --bands کے ساتھ)، نیا نقشہ الگ پرواز کے طور پر آ جائے گا۔",
    "retry_gsd": "زمینی نمونہ فاصلہ، میٹر فی پکسل (مثلاً 0.03)، یا خالی چھوڑ دیں",
    "download": "ڈاؤن لوڈ",
    "pdf": "پی ڈی ایف ڈاؤن لوڈ کریں",
    "print": "پرنٹ",
    "report_title": "کھیت کی رپورٹ",
    "location": "مقام",
    "location_unknown": "نامعلوم",
    "approx_location": "اندازاً، کیمرے کے جی پی ایس سے",
    "total_area": "نقشے کا رقبہ",
    "classes_table": "قسم کے لحاظ سے رقبہ",
    "vigour_table": "فصل کی طاقت",
    "share": "حصہ",
    "share_of_crop": "فصل کا حصہ",
    "hectares": "ہیکٹر",
    "square_metres": "مربع میٹر",
    "class": "قسم",
    "level": "درجہ",
    "class_share_chart": "کھیت میں ہر قسم کا حصہ",
    "histogram": "کھیت میں {index}",
    "median": "درمیانی قدر",
    "histogram_note": "ہر {index} قدر والے پکسلز کی تعداد؛ زیادہ قدر کا مطلب زیادہ سبز اور گھنے "
    "پودے۔",
    "next_steps": "آگے کیا کریں",
    "model": "اس نقشے کے بارے میں",
    "model_line": "ماڈل {name}، ورژن {version}۔",
    "limits": "ماڈل کو قریب سے لی گئی تصویروں (ملی میٹر فی پکسل) پر سکھایا گیا اور یہاں ڈرون "
    "تصویروں پر لگایا گیا ہے: نقشے کو اندازہ سمجھیں اور اسپرے یا کھاد سے پہلے کھیت میں "
    "جا کر دیکھیں۔",
    "vigour_limits": "فصل کی طاقت ہر حصے کا اسی کھیت کے باقی حصوں سے موازنہ ہے؛ یہ بتاتی ہے کہ فصل "
    "کہاں کمزور ہے، یہ نہیں کہ کیوں (پانی، خوراک، کیڑے یا بوائی)۔",
    "vigour_rule": "فصل کی طاقت ایک اصول ہے، سیکھی ہوئی درجہ بندی نہیں: فصل کا خانہ کمزور ہے "
    "جب اس کا اوسط {index} {low} سے کم ہو، مضبوط جب {high} سے زیادہ ہو، ورنہ درمیانہ۔ "
    "یہ حدیں اس پرواز کے فصل والے خانوں کے وسطانیہ ({median}) سے 1.5 مضبوط پھیلاؤ کم یا "
    "زیادہ ہیں، اور اس سے کم از کم 0.05 دور۔ یہ بتاتی ہے کہ فصل کہاں باقی کھیت سے کمزور ہے، "
    "یہ نہیں کہ کیوں۔",
    "vigour_rule_vegetation": "یہاں فصل الگ نہیں پہچانی گئی، اس لیے ساری ہریالی کا موازنہ کیا گیا۔",
    "gsd_line": "ہر پکسل زمین کا {gsd} حصہ دکھاتا ہے ({how})۔",
    "gsd_from_crs": "نقشے کے کوآرڈینیٹس سے",
    "gsd_from_camera": "ڈرون کی اونچائی اور کیمرے سے؛ اندازاً",
    "gsd_from_user": "جیسا بتایا گیا",
    "gsd_unknown": "یہ معلوم نہیں کہ ایک پکسل کتنی زمین دکھاتا ہے، اس لیے فصل اور جڑی بوٹیوں میں "
    "فرق نہیں کیا گیا۔",
    "method_model": "فصل اور جڑی بوٹیوں میں فرق سیکھے ہوئے ماڈل {name} {version} نے کیا، جو تصویر "
    "کو {gsd} فی پکسل پر پڑھتا ہے۔",
    "method_model_range": "اسے {lo} سے {hi} فی پکسل کی ڈرون تصویروں پر جانچا گیا ہے۔",
    "method_rows": "فصل اور جڑی بوٹیوں میں فرق تصویر میں ملی فصل کی قطاروں سے کیا گیا (تقریباً "
    "{spacing} میٹر کے فاصلے پر): قطار پر اگے پودے فصل ہیں، قطاروں کے بیچ اگے پودے جڑی بوٹیاں۔",
    "method_index": "اس تصویر کی تفصیل پر یہ نقشہ فصل اور جڑی بوٹیوں میں فرق نہیں کرتا: یہ سبزے "
    "کے اشاریے سے صرف پودے اور خالی مٹی دکھاتا ہے۔",
    "limits_model": "سیکھا ہوا ماڈل ان فصلوں، مٹی اور روشنی پر غلط ہو سکتا ہے جو اس نے نہیں "
    "دیکھیں: اسپرے یا کھاد سے پہلے کھیت میں جا کر نقشہ جانچیں۔",
    "limits_rows": "قطار کے اندر اگی جڑی بوٹی فصل گنی جاتی ہے، اور جہاں قطاریں نہیں ملیں وہاں "
    "پودے صرف سبزہ دکھائے گئے ہیں: اسپرے سے پہلے کھیت میں جا کر دیکھیں۔",
    "limits_index": "فصل اور جڑی بوٹیوں میں فرق کے لیے نیچی پرواز کریں (1.5 سینٹی میٹر فی پکسل یا "
    "اس سے باریک) یا قطاروں والی فصل کا نقشہ 1 سے 10 سینٹی میٹر فی پکسل پر بنائیں۔",
    "weed_cover": "جڑی بوٹیاں نقشے والے رقبے کے {pct} حصے پر ہیں۔",
    "cls_vegetation": "سبزہ",
    "label_rule": "تربیتی تصویروں پر نشان کیسے لگے: {rule}",
    "warnings": "تجزیے کے نوٹ",
    "approx_ha": "تقریباً {ha} ہیکٹر",
    "px_note": "کوآرڈینیٹ نہیں: ہیکٹر کی بجائے تصویر کے حصے۔",
    "generated": "کھیت {version} سے {date} کو بنی۔",
    "cls_soil": "مٹی",
    "cls_crop": "فصل",
    "cls_weed": "جڑی بوٹیاں",
    "lvl_low": "کم",
    "lvl_medium": "درمیانی",
    "lvl_high": "زیادہ",
    "dir_n": "شمال",
    "dir_ne": "شمال مشرق",
    "dir_e": "مشرق",
    "dir_se": "جنوب مشرق",
    "dir_s": "جنوب",
    "dir_sw": "جنوب مغرب",
    "dir_w": "مغرب",
    "dir_nw": "شمال مغرب",
    "dir_c": "درمیان",
    "img_n": "اوپر",
    "img_ne": "اوپر دائیں",
    "img_e": "دائیں",
    "img_se": "نیچے دائیں",
    "img_s": "نیچے",
    "img_sw": "نیچے بائیں",
    "img_w": "بائیں",
    "img_nw": "اوپر بائیں",
    "img_c": "درمیان",
    "advice_weed_patch": "کھیت کے {where} والے حصے میں {area} جڑی بوٹیوں کا ٹکڑا دیکھیں اور بیج "
    "بننے سے پہلے جڑی بوٹیاں نکالیں۔",
    "advice_weed_patch_img": "تصویر کے {where} میں جڑی بوٹیوں کا ٹکڑا ({share}) دیکھیں۔",
    "advice_weed_wide": "جڑی بوٹیاں کھیت کے {share} حصے پر ہیں: صرف چند جگہوں کی بجائے پورے کھیت "
    "کی گوڈی کا منصوبہ بنائیں۔",
    "advice_low_patch": "{where} میں کمزور فصل ({area}) کا پیدل معائنہ کریں: خشک مٹی، پیلے پتے، "
    "کیڑے یا بوائی کے خلا دیکھیں۔",
    "advice_low_patch_img": "تصویر کے {where} میں کمزور فصل ({share} فصل) کا معائنہ کریں: خشک "
    "مٹی، پیلے پتے، کیڑے یا بوائی کے خلا دیکھیں۔",
    "advice_all_good": "کوئی جڑی بوٹیوں کا ٹکڑا یا کمزور حصہ نمایاں نہیں۔ فصل پر نظر رکھنے کے لیے "
    "دو تین ہفتے بعد دوبارہ پرواز کریں۔",
    "advice_check": "نقشہ ایک اندازہ ہے: اسپرے یا کھاد سے پہلے کھیت میں جا کر تصدیق کریں۔",
    "advice_none": "نقشے میں نہ فصل ہے نہ جڑی بوٹیاں؛ دیکھیں کہ صحیح کھیت پر پرواز ہوئی تھی۔",
    "advice_vegetation_only": "نقشے میں کھیت کے {share} حصے پر پودے ہیں، مگر یہ فصل اور جڑی "
    "بوٹیوں میں فرق نہیں کر سکتا: {why}۔ اسپرے سے پہلے کھیت میں جا کر دیکھیں کہ کون سے پودے "
    "جڑی بوٹیاں ہیں۔",
    "why_gsd_unknown": "یہ معلوم نہیں کہ ایک پکسل زمین کا کتنا حصہ دکھاتا ہے، اور فصل اور جڑی "
    "بوٹیوں میں فرق اسی کے معلوم ہونے پر ہوتا ہے",
    "why_no_rows": "اس تصویر کے لیے کوئی ماڈل نہیں بنا اور اس میں فصل کی قطاریں نہیں ملیں",
    "advice_crop_unstated": "کھیت کی فصل درج نہیں تھی: اس نقشے پر فصل اور جڑی بوٹیاں ایسے ماڈل "
    "سے ہیں جس نے صرف {crops} سیکھی ہے۔ اگر کھیت میں کچھ اور اگتا ہے تو اس کی فصل درج کریں اور "
    "جڑی بوٹیوں پر عمل سے پہلے پرواز کا دوبارہ تجزیہ کریں۔",
    "why_crop": "Khet کے ماڈل نے کھیت کی فصل ({crop}) نہیں سیکھی، اور تصویر میں فصل کی قطاریں "
    "نہیں ملیں",
    "why_resolution": "{gsd} فی پکسل پر اس تصویر کے لیے کوئی ماڈل نہیں بنا، اور فصل کی قطاریں "
    "صرف 2 ملی میٹر سے 10 سینٹی میٹر فی پکسل پر تلاش کی جاتی ہیں",
    "why_rows_none": "پودے وہاں ہیں جہاں فصل کی قطاریں نہیں ملیں",
    "why_other": "جس طریقے سے یہ نقشہ بنا وہ صرف پودے اور مٹی دکھاتا ہے",
    "not_found": "نہیں ملا",
    "not_found_text": "یہ صفحہ موجود نہیں، یا آپ کو اس تک رسائی نہیں۔",
    "back": "اپنے کھیتوں پر واپس",
}

MESSAGES: dict[str, dict[str, str]] = {"en": EN, "ur": UR}


def pick_language(value: str | None) -> str:
    """The language code if Khet speaks it, else English."""
    return value if value in MESSAGES else "en"


class Translator:
    """`t("key", name=...)` in templates; unknown keys come back as the key, visibly."""

    def __init__(self, lang: str) -> None:
        self.lang = pick_language(lang)
        self.dir = DIRECTION[self.lang]

    def __call__(self, key: str, **kw: object) -> str:
        text = MESSAGES[self.lang].get(key) or EN.get(key) or key
        return text.format(**kw) if kw else text

    @property
    def known(self) -> set[str]:
        """The keys this language or English has a text for."""
        return set(MESSAGES[self.lang]) | set(EN)

    def name(self, prefix: str, value: str) -> str:
        """A class or level name, translated when the table knows it, else as the model says."""
        key = f"{prefix}_{value}"
        if key in MESSAGES[self.lang] or key in EN:
            return self(key)
        return value.replace("_", " ").capitalize()
