// Chinese by default, English on request; the choice is kept in localStorage.
const MESSAGES = {
  zh: {
    title: "枪械部件比对", lang: "English", signin: "登录", signout: "退出", key: "API 密钥",
    keyHint: "请输入管理员发放的 API 密钥", signedAs: "已登录：", gallery: "参考库", search: "检索",
    pick: "选择图片", camera: "拍照", drop: "将图片拖到此处，或使用上方按钮", modality: "图像类型",
    photo: "照片", xray: "X 光", k: "结果数", regions: "分区筛查（X 光）", submit: "检索",
    working: "正在处理……", alert: "警报：疑似枪械部件", review: "需人工复核", clear: "未发现匹配的危险品",
    score: "相似度", threshold: "阈值", uncalibrated: "（未校准，使用默认阈值）", matches: "最相似的参考",
    history: "此图片的近期检索记录", noHistory: "此前未检索过此图片", threat: "危险品",
    correct: "正确", wrong: "错误", thanks: "已记录反馈", makeModel: "型号", category: "类别",
    label: "标签", calibre: "口径", notes: "备注", add: "添加参考", edit: "编辑", del: "删除",
    save: "保存", cancel: "取消", confirmDelete: "确定删除此参考？", feedback: "分析员反馈",
    verdict: "判断", time: "时间", keyName: "密钥", items: "条参考", image: "图片", query: "检索编号",
    errorPrefix: "错误：", needAnalyst: "此页面需要分析员权限", yes: "是", no: "否", auto: "默认（参考库类型）",
    mapScore: "部件概率",
    adaptTitle: "扫描仪自适应",
    adaptHelp: "用本服务判为放行的 X 光扫描（分析员未反馈过的）微调威胁热图，使其适应本站扫描仪；生成包裹基准下降超过限度、或留出扫描上小部件或较大物体的排序变差时拒绝，原热图保留。运行期间检索会变慢。",
    adaptMinutes: "时间预算（分钟）", adaptScans: "最多使用的放行扫描", adaptStart: "开始自适应",
    adaptRunning: "正在自适应：", adaptScansUsed: "张扫描", adaptPhase_starting: "准备",
    adaptPhase_reading: "读取扫描", adaptPhase_adapting: "训练热图", adaptPhase_calibrating: "重新校准阈值",
    adaptDone: "已安装新热图并重新校准。留出扫描 AUC", adaptRefused: "未通过门槛，保留原热图。留出扫描 AUC",
    adaptFailed: "自适应失败：", adaptSmall: "小部件", adaptLarge: "较大物体",
    adaptUsed: "；训练 / 留出扫描：", adaptOffered: "（共提供 {n} 张，时间预算内只用了这些）",
    adaptAlertRate: "；报警阈值取自 {n} 张未参与训练的放行扫描，预计约 {p} 的无害包裹会报警",
  },
  en: {
    title: "Firearm part matching", lang: "中文", signin: "Sign in", signout: "Sign out", key: "API key",
    keyHint: "Enter the API key you were given", signedAs: "Signed in as ", gallery: "Gallery",
    search: "Search", pick: "Choose image", camera: "Take photo",
    drop: "Drop an image here, or use the buttons above", modality: "Image type", photo: "Photo",
    xray: "X-ray", k: "Results", regions: "Screen regions (X-ray)", submit: "Search",
    working: "Working…", alert: "ALERT: likely firearm component", review: "Needs review",
    clear: "No threat match", score: "Score", threshold: "threshold",
    uncalibrated: "(uncalibrated: default thresholds)", matches: "Closest references",
    history: "Recent searches of this image", noHistory: "This image was not searched before",
    threat: "threat", correct: "Correct", wrong: "Wrong", thanks: "Feedback recorded",
    makeModel: "Make/model", category: "Category", label: "Label", calibre: "Calibre",
    notes: "Notes", add: "Add reference", edit: "Edit", del: "Delete", save: "Save",
    cancel: "Cancel", confirmDelete: "Delete this reference?", feedback: "Analyst feedback",
    verdict: "Verdict", time: "Time", keyName: "Key", items: "references", image: "Image",
    query: "Query", errorPrefix: "Error: ", needAnalyst: "This page needs the analyst role",
    yes: "yes", no: "no", auto: "Default (gallery type)", mapScore: "part probability",
    adaptTitle: "Adapt to this scanner",
    adaptHelp: "Fine-tunes the threat map on the X-ray scans this service declared clear (and no analyst gave feedback on), so it fits this station's scanner. Refused, keeping the current map, if the generated-parcel benchmark drops past the margin or the held-out scans rank small parts or larger objects worse. Searches are slower while it runs.",
    adaptMinutes: "Time budget (minutes)", adaptScans: "Most cleared scans to use", adaptStart: "Start adapting",
    adaptRunning: "Adapting:", adaptScansUsed: "scans", adaptPhase_starting: "starting",
    adaptPhase_reading: "reading scans", adaptPhase_adapting: "training the map",
    adaptPhase_calibrating: "measuring thresholds again",
    adaptDone: "Installed the adapted map and new thresholds. Held-out scans' AUC",
    adaptRefused: "Refused by the gate; the map is unchanged. Held-out scans' AUC", adaptFailed: "Adaptation failed: ",
    adaptSmall: "small parts", adaptLarge: "larger objects",
    adaptUsed: "; scans trained on / held out: ", adaptOffered: " (of {n} offered: the time budget held these)",
    adaptAlertRate: "; alert threshold from {n} cleared scans training never saw: about {p} of clean parcels will alert",
  },
};

function lang() { return localStorage.getItem("gunmatch.lang") || "zh"; }
function t(key) { return (MESSAGES[lang()] || MESSAGES.zh)[key] || key; }
function applyI18n(root = document) {
  document.documentElement.lang = lang() === "zh" ? "zh-CN" : "en";
  root.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  root.querySelectorAll("[data-i18n-placeholder]").forEach((el) => {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  });
}
function toggleLang() {
  localStorage.setItem("gunmatch.lang", lang() === "zh" ? "en" : "zh");
  applyI18n();
  document.dispatchEvent(new Event("langchange"));
}
