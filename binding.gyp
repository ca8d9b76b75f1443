{
  "target_defaults": {
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
    "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "_GNU_SOURCE"],
    "cflags!": ["-fno-exceptions"],
    "cflags_cc!": ["-fno-exceptions"],
    "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter", "-O2"],
    "conditions": [
      ["OS!='linux'", { "type": "none" }]
    ]
  },
  "targets": [
    {
      "target_name": "node_dsm",
      "sources": [
        "native/addon.cc",
        "native/addon_env.cc",
        "native/app_calls.cc",
        "native/app_interrupt.cc",
        "native/data_channel.cc",
        "native/fault_routes.cc",
        "native/file_lock.cc",
        "native/file_calls.cc",
        "native/idle_poller.cc",
        "native/dsm.cc",
        "native/commit_changes.cc",
        "native/page_installs.cc",
        "native/data_channels.cc",
        "native/models.cc",
        "native/page_diff.cc",
        "native/fault_handler.cc",
        "native/lease_alarm.cc",
        "native/loop_wakeup.cc",
        "native/protections.cc",
        "native/region.cc",
        "native/request_ring.cc",
        "native/service_calls.cc",
        "native/model_calls.cc",
        "native/shared_constants.cc"
      ]
    },
    {
      "target_name": "node_dsm_hooks",
      "sources": [
        "native/hooks_addon.cc",
        "native/fault_floor.cc"
      ]
    }
  ]
}
